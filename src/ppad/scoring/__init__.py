"""Scoring images with a trained model, and evaluating on a labelled split.

Names are imported on first use, so the numpy-only modules (``rows``, ``archive``) load without
PyTorch — the ONNX runtime path stands on them.
"""

from ppad.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_ETA": "rule",
    "aggregate_views": "rule",
    "Evaluation": "evaluation",
    "evaluate": "evaluation",
    "evaluate_run": "evaluation",
    "format_metrics": "evaluation",
    "write_evaluation": "evaluation",
    "ScoreReport": "rows",
    "DetectorScorer": "scorer",
    "score_files": "scorer",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
