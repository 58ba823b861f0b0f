"""PPAD as a pure ``nn.Module``: frozen backbone + position-guided text and image prompts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ppad.backbones.backbone import ClipBackbone
from ppad.backbones.preprocessing import Preprocessing
from ppad.prompts import PatchPrompt, PositionTextPrompt
from ppad.regions import get_region_set

ABNORMAL_CLASS = 1  # classes are (normal word, abnormal word)


@dataclass(frozen=True)
class PPADConfig:
    """Everything that shapes the prompts, saved next to them."""

    classes: tuple[str, str] = ("normal", "pneumonia")
    region_set: str = "ppad"
    n_ctx: int = 16
    class_specific: bool = False
    image_size: int = 224
    resize_mode: str = "pad"
    eta: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PPADConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "classes" in values:
            values["classes"] = tuple(values["classes"])
        return cls(**values)


class PPADModel(nn.Module):
    """Scores an image at every position region; only the two prompt modules learn."""

    def __init__(self, backbone: ClipBackbone, config: PPADConfig = PPADConfig()) -> None:
        super().__init__()
        if len(config.classes) != 2:
            raise ValueError("PPAD takes exactly two class words: (normal, abnormal)")
        self.config = config
        self.backbone = backbone
        self.regions = get_region_set(config.region_set)
        base = backbone.architecture.preprocessing
        self.preprocessing = Preprocessing(config.image_size, base.mean, base.std, config.resize_mode)
        grid = backbone.grid_size(config.image_size)
        device = backbone.clip.logit_scale.device
        self.text_prompt = PositionTextPrompt(backbone, self.regions.names, config.classes, config.n_ctx, config.class_specific)
        self.image_prompt = PatchPrompt(grid * grid, backbone.width).to(device)
        keep = self.regions.patch_masks(config.image_size, backbone.patch_size)
        self.register_buffer("patch_keep", keep.to(device), persistent=False)
        self._text_cache: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.patch_keep.device

    def prompt_state_dict(self) -> dict[str, torch.Tensor]:
        """The learnable tensors only (what a checkpoint stores)."""
        return {name: param.detach() for name, param in self.named_parameters() if param.requires_grad}

    def load_prompt_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = self.prompt_state_dict()
        if set(state) != set(expected):
            raise ValueError(f"prompt tensors {sorted(state)} do not match the model's {sorted(expected)}")
        for name, value in state.items():
            if value.shape != expected[name].shape:
                raise ValueError(f"prompt tensor {name} has shape {tuple(value.shape)}, expected {tuple(expected[name].shape)}")
        self.load_state_dict(state, strict=False)

    def text_features(self) -> torch.Tensor:
        """[R, 2, D] unit-norm text features (cached inside :meth:`inference`)."""
        if self._text_cache is not None:
            return self._text_cache
        return self.text_prompt.text_features(self.backbone)

    @contextmanager
    def inference(self) -> Iterator[PPADModel]:
        """No gradients, and text features computed once for every batch inside the block."""
        with torch.no_grad():
            self._text_cache = self.text_prompt.text_features(self.backbone)
            try:
                yield self
            finally:
                self._text_cache = None

    def _logits(self, patches: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        prompted = self.image_prompt(patches, self.patch_keep[region_index])
        features = F.normalize(self.backbone.encode_patch_embeddings(prompted), dim=-1)
        text = self.text_features()[region_index]  # [B, 2, D]
        return self.backbone.logit_scale * torch.einsum("bd,bcd->bc", features, text)

    def class_logits(self, images: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised images, [B] region indices → [B, 2] scaled cosine logits."""
        return self._logits(self.backbone.patch_embeddings(images), region_index)

    def forward(self, images: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        """Abnormal-vs-normal log-odds [B]: ``sigmoid`` of it is the abnormal softmax probability."""
        logits = self.class_logits(images, region_index)
        return logits[:, ABNORMAL_CLASS] - logits[:, 1 - ABNORMAL_CLASS]

    def view_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """[B, R] abnormal probability of every image at every region; patches projected once."""
        batch, views = images.shape[0], len(self.regions)
        region_index = torch.arange(views, device=images.device).repeat(batch)
        patches = self.backbone.patch_embeddings(images).repeat_interleave(views, dim=0)
        logits = self._logits(patches, region_index)
        return logits.softmax(dim=-1)[:, ABNORMAL_CLASS].reshape(batch, views)
