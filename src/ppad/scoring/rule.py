"""PPAD's view-aggregation rule."""

from __future__ import annotations

import numpy as np

DEFAULT_ETA = 0.8


def aggregate_views(probabilities: np.ndarray, eta: float = DEFAULT_ETA) -> np.ndarray:
    """[N, V] abnormal probabilities → [N] scores.

    If an image's largest view probability exceeds ``eta`` that maximum is its score (one
    confident region suffices); otherwise the mean over all views.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] == 0:
        raise ValueError(f"expected [images, views] probabilities, got shape {probabilities.shape}")
    peak = probabilities.max(axis=1)
    return np.where(peak > eta, peak, probabilities.mean(axis=1))
