"""Training losses by name; each takes the model and a :class:`~ppad.data.batches.ModelBatch`.

Image-level losses train on the views' class logits (PPAD, CoOp, MaPLe); the pixel-level one
trains a method's anomaly map against the synthetic anomaly's mask (MediCLIP).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ppad.data.batches import ModelBatch
from ppad.methods.base import ABNORMAL_CLASS, PromptDetector

FOCAL_GAMMA = 2.0
FOCAL_ALPHA = 1.0
DICE_SMOOTH = 1.0


def softmax_bce(model: PromptDetector, batch: ModelBatch) -> torch.Tensor:
    """BCE on the abnormal softmax probability (ppad): one sigmoid of the logit difference."""
    return F.binary_cross_entropy_with_logits(model(batch.images, batch.region_index, batch.region_masks), batch.labels)


def two_sigmoid_bce(model: PromptDetector, batch: ModelBatch) -> torch.Tensor:
    """BCE on each scaled cosine logit on its own, targets (1 − y, y), averaged over the 2B terms
    (the authors' code); scoring still takes the softmax."""
    targets = torch.stack([1 - batch.labels, batch.labels], dim=1)
    logits = model.class_logits(batch.images, batch.region_index, batch.region_masks)
    return F.binary_cross_entropy_with_logits(logits, targets)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = FOCAL_GAMMA, alpha: float = FOCAL_ALPHA
) -> torch.Tensor:
    """[B, 2, H, W] two-class logits, [B, H, W] 0/1 target → mean over pixels of
    ``−α (1 − p_t)^γ log p_t`` with ``p_t`` the softmax probability of the pixel's true class."""
    log_p = F.log_softmax(logits, dim=1).gather(1, target.long()[:, None])[:, 0]
    return (-alpha * (1 - log_p.exp()) ** gamma * log_p).mean()


def dice_loss(probability: torch.Tensor, target: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """[B, H, W] abnormal probability and 0/1 target → mean over images of
    ``1 − (2 Σ p·t + s) / (Σ p + Σ t + s)``."""
    p, t = probability.flatten(1), target.flatten(1).to(probability.dtype)
    return (1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def focal_dice(model: PromptDetector, batch: ModelBatch) -> torch.Tensor:
    """MediCLIP's loss, 1:1: focal on the map's two-class softmax + Dice on its abnormal channel."""
    logits = model.map_logits(batch.images)
    abnormal = logits.softmax(dim=1)[:, ABNORMAL_CLASS]
    return focal_loss(logits, batch.anomaly_masks) + dice_loss(abnormal, batch.anomaly_masks)


#: (model, batch) → loss
Loss = Callable[[PromptDetector, ModelBatch], torch.Tensor]
LOSSES: dict[str, Loss] = {"softmax-bce": softmax_bce, "two-sigmoid": two_sigmoid_bce, "focal-dice": focal_dice}
