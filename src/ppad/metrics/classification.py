"""Image-level detection metrics: AUC, AP, ACC and F1 at a threshold, bootstrap CI for AUC."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from ppad.errors import DataError
from ppad.metrics import DEFAULT_THRESHOLD


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be 1-D and equal in length")
    if set(np.unique(labels)) != {0, 1}:
        raise DataError("metrics need both normal (0) and abnormal (1) images")
    return labels, scores


def classification_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, float]:
    """AUC, AP (threshold-free) and ACC, F1 with ``score > threshold`` called abnormal."""
    labels, scores = _check(labels, scores)
    predicted = (scores > threshold).astype(int)
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "ap": float(average_precision_score(labels, scores)),
        "acc": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "threshold": float(threshold),
        "n_normal": int((labels == 0).sum()),
        "n_abnormal": int((labels == 1).sum()),
    }


def bootstrap_auc_ci(
    labels: np.ndarray, scores: np.ndarray, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval for the AUC, resampling normals and abnormals separately."""
    labels, scores = _check(labels, scores)
    rng = np.random.default_rng(seed)
    negatives, positives = scores[labels == 0], scores[labels == 1]
    neg = negatives[rng.integers(negatives.size, size=(n_resamples, negatives.size))]
    pos = positives[rng.integers(positives.size, size=(n_resamples, positives.size))]
    aucs = np.array([_mann_whitney_auc(n, p) for n, p in zip(neg, pos)])
    tail = (1 - level) / 2
    low, high = np.quantile(aucs, [tail, 1 - tail])
    return float(low), float(high)


def _mann_whitney_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score_pos > score_neg) + ½ P(tie), via ranks."""
    both = np.concatenate([negatives, positives])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(both.size)
    sorted_scores = both[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[negatives.size :].sum()
    return float((rank_sum - positives.size * (positives.size + 1) / 2) / (positives.size * negatives.size))
