"""The pictures ``ppad evaluate`` writes beside metrics.json: what each panel draws, and the files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ppad.metrics import bootstrap_auc_ci, classification_metrics, operating_point, plot_evaluation
from ppad.metrics.plots import (
    OPERATING_POINT_GID,
    draw_confusion,
    draw_precision_recall,
    draw_roc,
    draw_score_histogram,
    pyplot,
)


@pytest.fixture
def evaluated(rng) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels and scores of 40 normal and 60 abnormal images, a few exactly at the threshold."""
    labels = np.r_[np.zeros(40, dtype=int), np.ones(60, dtype=int)]
    scores = np.clip(np.r_[rng.normal(0.4, 0.15, 40), rng.normal(0.6, 0.15, 60)], 0, 1)
    scores[[0, 1, 50]] = 0.5  # not called abnormal: the rule is score > threshold
    metrics = classification_metrics(labels, scores)
    metrics["auc_ci95"] = list(bootstrap_auc_ci(labels, scores, n_resamples=50))
    return labels, scores, metrics


def _counted_by_hand(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, int]:
    called = scores > threshold
    return {
        "tn": int(np.sum(~called & (labels == 0))),
        "fp": int(np.sum(called & (labels == 0))),
        "fn": int(np.sum(~called & (labels == 1))),
        "tp": int(np.sum(called & (labels == 1))),
    }


def _marker(axes) -> tuple[float, float]:
    (line,) = [line for line in axes.get_lines() if line.get_gid() == OPERATING_POINT_GID]
    return float(line.get_xdata()[0]), float(line.get_ydata()[0])


def test_operating_point_counts_as_the_metrics_threshold_does(evaluated):
    labels, scores, metrics = evaluated
    point = operating_point(labels, scores, 0.5)
    c = _counted_by_hand(labels, scores)
    assert point.confusion.tolist() == [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]
    assert point.tpr == pytest.approx(c["tp"] / 60) and point.fpr == pytest.approx(c["fp"] / 40)
    assert point.precision == pytest.approx(c["tp"] / (c["tp"] + c["fp"]))
    assert (c["tp"] + c["tn"]) / 100 == pytest.approx(metrics["acc"])  # the same rule as ACC
    assert operating_point(labels, scores, 2.0).precision == 1.0  # nothing called abnormal: where the curve ends


def test_roc_and_precision_recall_mark_the_operating_point(evaluated):
    labels, scores, metrics = evaluated
    point = operating_point(labels, scores, 0.5)
    c = _counted_by_hand(labels, scores)
    figure, (roc, pr) = pyplot().subplots(1, 2)
    draw_roc(roc, labels, scores, metrics, point)
    draw_precision_recall(pr, labels, scores, metrics, point)
    assert _marker(roc) == pytest.approx((c["fp"] / 40, c["tp"] / 60))
    assert _marker(pr) == pytest.approx((c["tp"] / 60, c["tp"] / (c["tp"] + c["fp"])))
    low, high = metrics["auc_ci95"]
    legend = [text.get_text() for text in roc.get_legend().get_texts()]
    assert legend[0] == f"AUC {metrics['auc'] * 100:.1f} (95% CI {low * 100:.1f}–{high * 100:.1f})"
    pr_legend = [text.get_text() for text in pr.get_legend().get_texts()]
    assert pr_legend[:2] == [f"AP {metrics['ap'] * 100:.1f}", "prevalence 60.0 (chance)"]
    assert any(tuple(line.get_ydata()) == (0.6, 0.6) for line in pr.get_lines())  # the prevalence baseline
    assert roc.get_xlabel() == "false positive rate" and pr.get_ylabel() == "precision"
    pyplot().close(figure)


def test_histogram_bins_both_classes_alike_and_draws_the_threshold(evaluated):
    labels, scores, metrics = evaluated
    figure, axes = pyplot().subplots()
    draw_score_histogram(axes, labels, scores, metrics, operating_point(labels, scores, 0.5))
    bars = axes.patches
    normal, abnormal = bars[: len(bars) // 2], bars[len(bars) // 2 :]
    assert [bar.get_x() for bar in normal] == [bar.get_x() for bar in abnormal]
    assert sum(bar.get_height() for bar in normal) == 40 and sum(bar.get_height() for bar in abnormal) == 60
    assert any(tuple(line.get_xdata()) == (0.5, 0.5) for line in axes.get_lines())
    pyplot().close(figure)


def test_confusion_matrix_shows_counts_and_row_percentages(evaluated):
    labels, scores, metrics = evaluated
    figure, axes = pyplot().subplots()
    draw_confusion(axes, labels, scores, metrics, operating_point(labels, scores, 0.5))
    c = _counted_by_hand(labels, scores)
    expected = [
        f"{c['tn']}\n{100 * c['tn'] / 40:.1f}%",
        f"{c['fp']}\n{100 * c['fp'] / 40:.1f}%",
        f"{c['fn']}\n{100 * c['fn'] / 60:.1f}%",
        f"{c['tp']}\n{100 * c['tp'] / 60:.1f}%",
    ]
    assert [text.get_text() for text in axes.texts] == expected
    assert [t.get_text() for t in axes.get_yticklabels()] == ["normal", "abnormal"]
    pyplot().close(figure)


def test_plot_evaluation_writes_readable_pngs(tmp_path, evaluated):
    labels, scores, metrics = evaluated
    written = plot_evaluation(tmp_path / "out", labels, scores, metrics, "run-a — knn")
    assert set(written) == {"overview", "roc", "precision_recall", "score_histogram", "confusion_matrix"}
    for name, path in written.items():
        assert path.parent == tmp_path / "out" and path.suffix == ".png"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
            assert min(image.size) >= 500, name
            assert pixels.std() > 10, name  # drawn, not a blank page
    with Image.open(written["overview"]) as overview, Image.open(written["roc"]) as roc:
        assert overview.width > roc.width  # the 2×2 panel is the larger one


def test_evaluate_writes_and_lists_the_figures_on_real_films(zhanglab_knn_run):
    """The session's shared knn run, evaluated through the CLI by its fixture."""
    run, done = zhanglab_knn_run.run, zhanglab_knn_run.evaluated
    document = json.loads((run / "evaluation" / "metrics.json").read_text())
    figures = document["figures"]
    assert set(figures) == {"overview", "roc", "precision_recall", "score_histogram", "confusion_matrix"}
    assert document["method"] == "knn"
    (printed,) = [line for line in done.stdout.splitlines() if line.startswith("figures → ")]
    assert printed.removeprefix("figures → ").split(", ") == list(figures.values())
    for path in figures.values():
        assert path.startswith(str(run / "evaluation"))
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 500
