"""Pictures of one evaluation: ROC, precision–recall, score histogram per class, confusion matrix.

matplotlib is imported on first use (Agg backend, no display), so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

CLASS_NAMES = ("normal", "abnormal")
OVERVIEW_FILE = "evaluation.png"
OPERATING_POINT_GID = "operating point"


@dataclass(frozen=True)
class OperatingPoint:
    """The detector at one threshold (``score > threshold`` called abnormal, as in the metrics)."""

    threshold: float
    confusion: np.ndarray  # 2×2 counts: rows true (normal, abnormal), columns predicted

    @property
    def tpr(self) -> float:
        _, _, fn, tp = self.confusion.ravel()
        return float(tp / (tp + fn))

    @property
    def fpr(self) -> float:
        tn, fp, _, _ = self.confusion.ravel()
        return float(fp / (fp + tn))

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1 when nothing is called abnormal (where the PR curve ends)."""
        _, fp, _, tp = self.confusion.ravel()
        return float(tp / (tp + fp)) if tp + fp else 1.0


def operating_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> OperatingPoint:
    """The confusion matrix (sklearn) of ``score > threshold`` against the labels."""
    predicted = (np.asarray(scores) > threshold).astype(int)
    return OperatingPoint(float(threshold), confusion_matrix(np.asarray(labels), predicted, labels=[0, 1]))


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def style_roc_axes(axes: Any, title: str) -> None:
    """Chance diagonal, axis names and limits of a ROC panel."""
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), title=title)


def save_figure(figure: Any, path: Path, dpi: int = 120) -> Path:
    """Lay out, write (making the folder) and close ``figure``."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)
    return path


def draw_roc(axes: Any, labels: np.ndarray, scores: np.ndarray, metrics: dict, point: OperatingPoint) -> None:
    """The ROC curve, its AUC with the bootstrap 95% CI, and the operating point."""
    fpr, tpr, _ = roc_curve(labels, scores)
    low, high = metrics["auc_ci95"]
    axes.plot(
        fpr, tpr, color="C0", linewidth=1.5, label=f"AUC {_pct(metrics['auc'])} (95% CI {_pct(low)}–{_pct(high)})"
    )
    _mark(axes, point, point.fpr, point.tpr, f"TPR {_pct(point.tpr)}, FPR {_pct(point.fpr)}")
    style_roc_axes(axes, "ROC")
    axes.legend(loc="lower right", fontsize=8)


def draw_precision_recall(
    axes: Any, labels: np.ndarray, scores: np.ndarray, metrics: dict, point: OperatingPoint
) -> None:
    """The precision–recall curve, its AP, the prevalence (a random detector) and the operating point."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    prevalence = float(labels.mean())
    axes.plot(recall, precision, color="C0", linewidth=1.5, drawstyle="steps-post", label=f"AP {_pct(metrics['ap'])}")
    axes.axhline(prevalence, color="grey", linestyle=":", linewidth=1, label=f"prevalence {_pct(prevalence)} (chance)")
    _mark(axes, point, point.tpr, point.precision, f"recall {_pct(point.tpr)}, precision {_pct(point.precision)}")
    axes.set(
        xlabel="recall (true positive rate)", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title="precision–recall"
    )
    axes.legend(loc="lower left", fontsize=8)


def draw_score_histogram(
    axes: Any, labels: np.ndarray, scores: np.ndarray, metrics: dict, point: OperatingPoint
) -> None:
    """Score histograms of normal and abnormal images over the same bins, and the threshold."""
    edges = np.histogram_bin_edges(np.append(scores, point.threshold), bins=30)
    tallest = 0
    for label, name in enumerate(CLASS_NAMES):
        group = scores[labels == label]
        counts, _, _ = axes.hist(group, bins=edges, color=f"C{label * 3}", alpha=0.55, label=f"{name} (n={group.size})")
        tallest = max(tallest, counts.max())
    axes.axvline(point.threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {point.threshold:g}")
    axes.set(xlabel="anomaly score", ylabel="images", ylim=(0, tallest * 1.35), title="scores per class (same bins)")
    axes.legend(loc="upper left", fontsize=8, ncols=2)


def draw_confusion(axes: Any, labels: np.ndarray, scores: np.ndarray, metrics: dict, point: OperatingPoint) -> None:
    """Counts and row percentages at the threshold: rows the truth, columns the call."""
    counts = point.confusion
    row_percent = 100 * counts / counts.sum(axis=1, keepdims=True)
    axes.imshow(row_percent, cmap="Blues", vmin=0, vmax=100)
    for (row, column), count in np.ndenumerate(counts):
        share = row_percent[row, column]
        colour = "white" if share > 60 else "black"
        axes.text(column, row, f"{count}\n{share:.1f}%", ha="center", va="center", color=colour, fontsize=11)
    axes.set_xticks([0, 1], CLASS_NAMES)
    axes.set_yticks([0, 1], CLASS_NAMES)
    axes.set(xlabel=f"predicted (score > {point.threshold:g})", ylabel="true", title="confusion matrix (row %)")


PANELS: dict[str, Callable[..., None]] = {
    "roc": draw_roc,
    "precision_recall": draw_precision_recall,
    "score_histogram": draw_score_histogram,
    "confusion_matrix": draw_confusion,
}


def plot_evaluation(
    out_dir: str | Path, labels: np.ndarray, scores: np.ndarray, metrics: dict, title: str
) -> dict[str, Path]:
    """``evaluation.png`` (the four panels, 2×2) and each panel alone (``roc.png``, ...) in ``out_dir``;
    ``metrics`` as :func:`classification_metrics` plus ``auc_ci95``. Returns {name: path}."""
    plt = pyplot()
    out_dir = Path(out_dir)
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=np.float64)
    point = operating_point(labels, scores, metrics["threshold"])
    heading = f"{title}\n{metrics['n_normal']} normal, {metrics['n_abnormal']} abnormal test images"
    figure, grid = plt.subplots(2, 2, figsize=(10, 9.5))
    for draw, axes in zip(PANELS.values(), grid.flat):
        draw(axes, labels, scores, metrics, point)
    figure.suptitle(heading)
    written = {"overview": save_figure(figure, out_dir / OVERVIEW_FILE, dpi=100)}
    for name, draw in PANELS.items():
        figure, axes = plt.subplots(figsize=(5.5, 5.5))
        draw(axes, labels, scores, metrics, point)
        figure.suptitle(heading, fontsize=10)
        written[name] = save_figure(figure, out_dir / f"{name}.png")
    return written


def _mark(axes: Any, point: OperatingPoint, x: float, y: float, rates: str) -> None:
    """The operating point on a curve panel (found again by its gid)."""
    axes.plot([x], [y], "o", color="C3", gid=OPERATING_POINT_GID, label=f"threshold {point.threshold:g}: {rates}")


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}"
