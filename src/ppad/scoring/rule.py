"""PPAD's view-aggregation rule."""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_ETA = 0.8


def eta_rule(probabilities: torch.Tensor, eta: float = DEFAULT_ETA) -> torch.Tensor:
    """[N, V] abnormal probabilities → [N] scores.

    If an image's largest view probability exceeds ``eta`` that maximum is its score (one
    confident region suffices); otherwise the mean over all views.
    """
    peak = probabilities.amax(dim=1)
    return torch.where(peak > eta, peak, probabilities.mean(dim=1))


def aggregate_views(probabilities: np.ndarray, eta: float = DEFAULT_ETA) -> np.ndarray:
    """:func:`eta_rule` on a numpy array, in float64."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] == 0:
        raise ValueError(f"expected [images, views] probabilities, got shape {probabilities.shape}")
    return eta_rule(torch.from_numpy(probabilities), eta).numpy()
