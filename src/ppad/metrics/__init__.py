"""Detection metrics, and the pictures of one evaluation (:mod:`ppad.metrics.plots`).

Only the threshold is defined here; the rest is imported on first use, so scoring (which needs
the threshold, not scikit-learn) stays light — ``ppad score --onnx`` stands on it.
"""

from ppad.lazy import lazy_exports

DEFAULT_THRESHOLD = 0.5  # a score above it is called abnormal

_EXPORTS = {
    "bootstrap_auc_ci": "classification",
    "classification_metrics": "classification",
    "operating_point": "plots",
    "plot_evaluation": "plots",
}
__all__ = ["DEFAULT_THRESHOLD", *sorted(_EXPORTS)]


__getattr__ = lazy_exports(__name__, _EXPORTS)
