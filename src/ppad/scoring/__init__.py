"""Scoring images with a trained model, and evaluating on a labelled split."""

from ppad.scoring.evaluation import (
    Evaluation,
    evaluate,
    evaluate_run,
    format_metrics,
    write_evaluation,
)
from ppad.scoring.rule import DEFAULT_ETA, aggregate_views
from ppad.scoring.scorer import ScoreReport, predict_views, score_files

__all__ = [
    "DEFAULT_ETA",
    "Evaluation",
    "ScoreReport",
    "aggregate_views",
    "evaluate",
    "evaluate_run",
    "format_metrics",
    "predict_views",
    "score_files",
    "write_evaluation",
]
