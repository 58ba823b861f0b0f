"""Exact per-location decompositions of a dual-tower model's scores (class activation maps).

A dual tower's image embedding is a linear head over average-pooled stage features, each divided
by its pooled norm. Upsampling every stage to the finest grid (nearest, integer factors, so means
are kept) and dividing by the same norms gives local head inputs whose mean *is* the pooled input;
the head being linear, the local embeddings average to the image embedding. So:

* ``text``: the whole-image view's abnormal log-odds ``s · ē·(t₁ − t₀)/‖ē‖`` is the mean over
  locations of ``s · e(loc)·(t₁ − t₀)/‖ē‖`` — the map holds each location's term;
* ``memory``: the memory distance ``1 − f̄·b*`` (``b*`` the nearest support normal) is the mean of
  ``1 − f(loc)·b*`` — each location's share of "unlike the nearest normal".

A patch memory (``patch-knn``, any backbone) needs no decomposition: ``patches`` is its own patch
scores, whose top-k mean inside the lung fields is the film's score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ppad.backbones.dual_tower import DualTowerBackbone
from ppad.methods.base import ABNORMAL_CLASS, PromptDetector
from ppad.methods.mediclip import MediCLIPModel
from ppad.methods.memory import KnnModel
from ppad.methods.patch_memory import PatchKnnModel


def is_dual_tower(model: PromptDetector) -> bool:
    return isinstance(model.backbone, DualTowerBackbone)


def has_text(model: PromptDetector) -> bool:
    """Whether the model scores the whole image's pooled embedding against text (not MediCLIP,
    whose score is its own map's maximum; not the memory alone)."""
    return "" in model.regions.names and not isinstance(model, KnnModel | PatchKnnModel | MediCLIPModel)


def has_memory(model: PromptDetector) -> bool:
    """A pooled few-shot memory (``knn`` and the fused methods), not a patch memory."""
    return hasattr(model, "memory") and not has_patch_memory(model)


def has_patch_memory(model: PromptDetector) -> bool:
    return isinstance(model, PatchKnnModel)


def local_stage_features(backbone: DualTowerBackbone, images: torch.Tensor, stages: tuple[int, ...]) -> torch.Tensor:
    """[B, C, h, w] stage features on the finest grid; their spatial mean = the pooled, unit-norm stages."""
    maps = backbone.dense_features(images, stages)
    size = max((m.shape[-2:] for m in maps), key=lambda shape: shape[0])
    return torch.cat(
        [
            F.interpolate(m, size=size, mode="nearest") / m.mean(dim=(2, 3)).norm(dim=1)[:, None, None, None]
            for m in maps
        ],
        dim=1,
    )


def text_map(model: PromptDetector, images: torch.Tensor) -> torch.Tensor:
    """[B, h, w] each location's term of the whole-image view's abnormal log-odds."""
    backbone: DualTowerBackbone = model.backbone
    local = local_stage_features(backbone, images, (*backbone.architecture.image_stages, -1))
    embedding = (
        torch.einsum("bchw,dc->bdhw", local, backbone.image_head.weight) + backbone.image_head.bias[:, None, None]
    )
    text = model.text_features()[model.regions.names.index("")]  # [2, D]
    direction = text[ABNORMAL_CLASS] - text[1 - ABNORMAL_CLASS]
    norm = embedding.mean(dim=(2, 3)).norm(dim=1)[:, None, None]
    return backbone.logit_scale * torch.einsum("bdhw,d->bhw", embedding, direction) / norm


def patch_memory_map(model: PromptDetector, images: torch.Tensor) -> torch.Tensor:
    """[B, h, w] the patch memory's own patch scores (any backbone)."""
    return model.patch_scores(images)


def mediclip_map(model: PromptDetector, images: torch.Tensor) -> torch.Tensor:
    """[B, S, S] MediCLIP's own map: each pixel's abnormal probability, the image score its maximum."""
    return model.anomaly_map(images)


def memory_map(model: PromptDetector, images: torch.Tensor) -> torch.Tensor:
    """[B, h, w] each location's term of the distance to the nearest support normal."""
    backbone: DualTowerBackbone = model.backbone
    stages = backbone.architecture.memory_stages
    local = local_stage_features(backbone, images, stages) / len(stages) ** 0.5  # pooled stages: unit norm each
    nearest = model.memory.bank[(local.mean(dim=(2, 3)) @ model.memory.bank.T).argmax(dim=1)]  # [B, F]
    return 1 - torch.einsum("bchw,bc->bhw", local, nearest)
