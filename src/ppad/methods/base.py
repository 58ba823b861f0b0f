"""What every detection method shares: a frozen backbone, views (regions), two class prompts.

A method supplies text features per view and class, and (optionally) its own way of turning
patch embeddings into image features. Scoring, training and checkpoints work on this surface.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ppad.backbones.backbone import ClipBackbone
from ppad.backbones.preprocessing import Preprocessing
from ppad.regions import get_region_set

ABNORMAL_CLASS = 1  # classes are (normal word, abnormal word)


@dataclass(frozen=True)
class DetectorConfig:
    """Settings every method has; subclasses add their own, all saved next to the prompts."""

    classes: tuple[str, str] = ("normal", "pneumonia")
    region_set: str = "ppad"
    image_size: int = 224
    resize_mode: str = "pad"
    eta: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "classes" in values:
            values["classes"] = tuple(values["classes"])
        return cls(**values)


class PromptDetector(nn.Module):
    """Scores images at every view of its region set with a frozen CLIP."""

    def __init__(self, backbone: ClipBackbone, config: DetectorConfig) -> None:
        super().__init__()
        if len(config.classes) != 2:
            raise ValueError("a detector takes exactly two class words: (normal, abnormal)")
        self.config = config
        self.backbone = backbone
        self.regions = get_region_set(config.region_set)
        base = backbone.architecture.preprocessing
        self.preprocessing = Preprocessing(config.image_size, base.mean, base.std, config.resize_mode)
        self.grid_size = backbone.grid_size(config.image_size)
        keep = self.regions.patch_masks(config.image_size, backbone.patch_size)
        self.register_buffer("patch_keep", keep.to(backbone.clip.logit_scale.device), persistent=False)
        self._text_cache: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.patch_keep.device

    # --- what a method provides ------------------------------------------------------------
    def compute_text_features(self) -> torch.Tensor:
        """[R, 2, D] unit-norm text features, one pair per view."""
        raise NotImplementedError

    def image_features(self, patches: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        """[B, N, W] patch embeddings, [B] view indices → [B, D] image features (default: plain CLIP)."""
        return self.backbone.encode_patch_embeddings(patches)

    # --- shared machinery -----------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def prompt_state_dict(self) -> dict[str, torch.Tensor]:
        """The learnable tensors only (what a checkpoint stores)."""
        return {name: param.detach() for name, param in self.named_parameters() if param.requires_grad}

    def load_prompt_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = self.prompt_state_dict()
        if set(state) != set(expected):
            raise ValueError(f"prompt tensors {sorted(state)} do not match the model's {sorted(expected)}")
        for name, value in state.items():
            if value.shape != expected[name].shape:
                raise ValueError(
                    f"prompt tensor {name} has shape {tuple(value.shape)}, expected {tuple(expected[name].shape)}"
                )
        self.load_state_dict(state, strict=False)

    def text_features(self) -> torch.Tensor:
        return self._text_cache if self._text_cache is not None else self.compute_text_features()

    @contextmanager
    def inference(self) -> Iterator[PromptDetector]:
        """No gradients, and text features computed once for every batch inside the block."""
        with torch.no_grad():
            self._text_cache = self.compute_text_features()
            try:
                yield self
            finally:
                self._text_cache = None

    def _logits(self, patches: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        features = F.normalize(self.image_features(patches, region_index), dim=-1)
        text = self.text_features()[region_index]  # [B, 2, D]
        return self.backbone.logit_scale * torch.einsum("bd,bcd->bc", features, text)

    def class_logits(self, images: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised images, [B] view indices → [B, 2] scaled cosine logits."""
        return self._logits(self.backbone.patch_embeddings(images), region_index)

    def forward(self, images: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        """Abnormal-vs-normal log-odds [B]: ``sigmoid`` of it is the abnormal softmax probability."""
        logits = self.class_logits(images, region_index)
        return logits[:, ABNORMAL_CLASS] - logits[:, 1 - ABNORMAL_CLASS]

    def view_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """[B, R] abnormal probability of every image at every view; patches projected once."""
        batch, views = images.shape[0], len(self.regions)
        region_index = torch.arange(views, device=images.device).repeat(batch)
        patches = self.backbone.patch_embeddings(images).repeat_interleave(views, dim=0)
        logits = self._logits(patches, region_index)
        return logits.softmax(dim=-1)[:, ABNORMAL_CLASS].reshape(batch, views)
