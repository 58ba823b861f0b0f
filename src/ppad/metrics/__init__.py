"""Detection metrics."""

from ppad.metrics.classification import DEFAULT_THRESHOLD, bootstrap_auc_ci, classification_metrics

__all__ = ["DEFAULT_THRESHOLD", "bootstrap_auc_ci", "classification_metrics"]
