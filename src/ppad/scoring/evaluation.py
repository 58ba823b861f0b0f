"""Evaluate a trained model on a labelled test split: scores, metrics, bootstrap CI, manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppad.backbones import Backbone
from ppad.data.layouts import DatasetIndex, discover
from ppad.errors import SettingsError
from ppad.io import write_json
from ppad.methods.base import PromptDetector
from ppad.metrics import bootstrap_auc_ci, classification_metrics, plot_evaluation
from ppad.runs import RunFolder
from ppad.runs.records import METRICS_FILE
from ppad.scoring.rows import ScoreReport
from ppad.scoring.scorer import score_files


@dataclass
class Evaluation:
    metrics: dict
    report: ScoreReport
    labels: np.ndarray
    excluded: list[Path]


def evaluate(
    model: PromptDetector,
    index: DatasetIndex,
    exclude: set[Path] | None = None,
    batch_size: int = 32,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> Evaluation:
    """Score the test split minus the files the model's run trained or validated on (``exclude``:
    other resolved paths to leave out instead; an empty set leaves none out)."""
    if exclude is None:
        exclude = model.trained_on
    if exclude is None:
        raise SettingsError(
            "evaluate() cannot tell which films this model trained or validated on: load it with "
            "load_run(RUN), or pass exclude= (a set of resolved paths; empty to leave none out)"
        )
    test = [item for item in index.test if item.path.resolve() not in exclude]
    excluded = [item.path for item in index.test if item.path.resolve() in exclude]
    report = score_files(model, [item.path for item in test], batch_size, progress)
    label_of = {item.path: item.label for item in test}
    labels = np.array([label_of[path] for path in report.paths], dtype=int)
    metrics = classification_metrics(labels, report.scores)
    low, high = bootstrap_auc_ci(labels, report.scores, n_resamples=bootstrap, seed=seed)
    metrics.update({"auc_ci95": [low, high], "bootstrap_resamples": bootstrap})
    return Evaluation(metrics=metrics, report=report, labels=labels, excluded=excluded)


def write_evaluation(evaluation: Evaluation, out_dir: str | Path, manifest: dict) -> dict[str, Any]:
    """``metrics.json`` (metrics + split manifest + seed + figure paths), ``scores.csv``/``scores.json``
    and the figures (:func:`plot_evaluation`, titled with the manifest's run name and method).
    Returns {"metrics", "scores_csv", "scores_json": path, "figures": {name: path}}."""
    out_dir = Path(out_dir)
    report = evaluation.report
    figures = plot_evaluation(out_dir, evaluation.labels, report.scores, evaluation.metrics, _figure_title(manifest))
    test_files = [
        {"path": str(p), "label": int(y), "score": float(s)}
        for p, y, s in zip(report.paths, evaluation.labels, report.scores)
    ]
    document = {
        **manifest,
        "metrics": evaluation.metrics,
        "figures": {name: str(path) for name, path in figures.items()},
        "test_split": test_files,
        "excluded_as_seen_in_training": [str(p) for p in evaluation.excluded],
        "unreadable": [{"path": str(f.path), "error": f.problem} for f in report.failures],
    }
    return {
        "metrics": write_json(out_dir / METRICS_FILE, document),
        "scores_csv": report.write_csv(out_dir / "scores.csv"),
        "scores_json": report.write_json(out_dir / "scores.json"),
        "figures": figures,
    }


def _figure_title(manifest: dict) -> str:
    """``run-name — method`` from what the manifest has of them."""
    run = Path(manifest["run"]).name if manifest.get("run") else None
    return " — ".join(part for part in (run, manifest.get("method")) if part) or "evaluation"


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | DatasetIndex,
    out_dir: str | Path | None = None,
    backbone: str | Path | Backbone | None = None,
    checkpoint: str = "best",
    device: str = "cpu",
    batch_size: int = 32,
    bootstrap: int = 1000,
    progress: bool = True,
    command: list[str] | None = None,
) -> tuple[Evaluation, dict[str, Any]]:
    """Load a run, evaluate it on ``data``'s test split (minus its training files), write
    ``metrics.json``, the scores and the figures into ``out_dir`` (default ``RUN/evaluation``)."""
    run = RunFolder(run_dir)
    run_manifest = run.read_manifest()
    index = data if isinstance(data, DatasetIndex) else discover(data)
    model = run.load_model(backbone, checkpoint, device)
    result = evaluate(model, index, None, batch_size, bootstrap, run_manifest.seed, progress)
    manifest = {
        "run": str(run.root),
        "method": run_manifest.identity.method,
        "checkpoint": checkpoint,
        "seed": run_manifest.seed,
        "data": str(index.root),
        "command": command,
    }
    return result, write_evaluation(result, out_dir or run.evaluation_dir, manifest)


def format_metrics(metrics: dict) -> str:
    """A small plain-text table of the headline metrics (percent, as in the paper)."""
    low, high = metrics["auc_ci95"]
    lines = [
        f"{'metric':<8}{'value':>8}",
        f"{'AUC':<8}{metrics['auc'] * 100:>8.1f}   (95% CI {low * 100:.1f}–{high * 100:.1f})",
        f"{'AP':<8}{metrics['ap'] * 100:>8.1f}",
        f"{'ACC':<8}{metrics['acc'] * 100:>8.1f}   (threshold {metrics['threshold']})",
        f"{'F1':<8}{metrics['f1'] * 100:>8.1f}",
        f"images: {metrics['n_normal']} normal, {metrics['n_abnormal']} abnormal",
    ]
    return "\n".join(lines)
