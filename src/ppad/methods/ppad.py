"""PPAD: position-guided text prompts plus an image prompt outside the region (and ablations).

The same module gives the paper's ablations by configuration: without the image prompt it is
``ppad-text``; with the whole-image view alone and no image prompt it is CoOp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppad.backbones.protocol import Backbone
from ppad.methods.base import DetectorConfig, PromptDetector
from ppad.prompts import PROMPT_INIT_STD, ImagePrompt, PositionTextPrompt


@dataclass(frozen=True)
class PPADConfig(DetectorConfig):
    """``prompt_init_std``: the image prompt's initial values are N(0, std²)."""

    n_ctx: int = 16
    class_specific: bool = False
    image_prompt: bool = True
    prompt_init_std: float = PROMPT_INIT_STD


class PPADModel(PromptDetector):
    """Frozen backbone + learnable position-guided context (+ learnable input outside the region)."""

    def __init__(self, backbone: Backbone, config: PPADConfig = PPADConfig()) -> None:
        super().__init__(backbone, config)
        self.text_prompt = PositionTextPrompt(
            backbone, self.regions.names, config.classes, config.n_ctx, config.class_specific
        )
        self.image_prompt = (
            ImagePrompt(self.prompt_shape, config.prompt_init_std).to(self.device) if config.image_prompt else None
        )
        unmasked = frozenset(v for v in range(len(self.regions)) if self.unmasked_views[v] > 0)
        self._plain_views = unmasked if self.image_prompt is not None else super().plain_views

    @property
    def plain_views(self) -> frozenset[int]:
        """Without an image prompt every view; with one, the views that mask nothing (the whole image)."""
        return self._plain_views

    @property
    def reads_film_masks(self) -> bool:
        return self.image_prompt is not None

    def compute_text_features(self) -> torch.Tensor:
        return self.text_prompt.text_features(self.backbone)

    def prompted_view_features(
        self, embeddings: torch.Tensor, views: list[int], keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One tower call for every prompted view (``keep``: [B, R, …] per-film keep masks)."""
        prompted = [self.image_prompt(embeddings, self.region_keep[v] if keep is None else keep[:, v]) for v in views]
        return self.backbone.encode_input_embeddings(torch.cat(prompted))

    def image_features(
        self, embeddings: torch.Tensor, region_index: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Views that mask nothing (the whole image) skip the prompt, so no gradient flows
        back through the image tower for them."""
        if self.image_prompt is None:
            return super().image_features(embeddings, region_index)
        encode = self.backbone.encode_input_embeddings
        keep = self.region_keep[region_index] if keep is None else keep
        masked = (keep < 1).flatten(1).any(dim=1)
        if not masked.any():
            return encode(embeddings)
        if masked.all():
            return encode(self.image_prompt(embeddings, keep))
        plain = encode(embeddings[~masked])
        prompted = encode(self.image_prompt(embeddings[masked], keep[masked]))
        features = plain.new_empty(len(embeddings), plain.shape[-1])
        features[~masked], features[masked] = plain, prompted
        return features
