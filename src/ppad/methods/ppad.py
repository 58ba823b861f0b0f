"""PPAD: position-guided text prompts plus an image prompt outside the region (and ablations).

The same module gives the paper's ablations by configuration: without the image prompt it is
``ppad-text``; with the whole-image view alone and no image prompt it is CoOp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppad.backbones.backbone import ClipBackbone
from ppad.methods.base import DetectorConfig, PromptDetector
from ppad.prompts import PatchPrompt, PositionTextPrompt


@dataclass(frozen=True)
class PPADConfig(DetectorConfig):
    n_ctx: int = 16
    class_specific: bool = False
    image_prompt: bool = True


class PPADModel(PromptDetector):
    """Frozen backbone + learnable position-guided context (+ learnable patches outside the region)."""

    def __init__(self, backbone: ClipBackbone, config: PPADConfig = PPADConfig()) -> None:
        super().__init__(backbone, config)
        self.text_prompt = PositionTextPrompt(
            backbone, self.regions.names, config.classes, config.n_ctx, config.class_specific
        )
        self.image_prompt = (
            PatchPrompt(self.grid_size**2, backbone.width).to(self.device) if config.image_prompt else None
        )

    def compute_text_features(self) -> torch.Tensor:
        return self.text_prompt.text_features(self.backbone)

    def image_features(self, patches: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        """Views that mask nothing (the whole image) skip the prompt, so no gradient flows
        back through the vision tower for them."""
        if self.image_prompt is None:
            return super().image_features(patches, region_index)
        keep = self.patch_keep[region_index]
        masked = (keep < 1).any(dim=1)
        if not masked.any():
            return self.backbone.encode_patch_embeddings(patches)
        if masked.all():
            return self.backbone.encode_patch_embeddings(self.image_prompt(patches, keep))
        features = patches.new_empty(len(patches), self.backbone.clip.visual.proj.shape[1])
        features[~masked] = self.backbone.encode_patch_embeddings(patches[~masked])
        features[masked] = self.backbone.encode_patch_embeddings(self.image_prompt(patches[masked], keep[masked]))
        return features
