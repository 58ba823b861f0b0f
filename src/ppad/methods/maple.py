"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompt learning on the frozen backbone.

Learnable context tokens enter the text tower at the input (as in CoOp) and are *replaced* by
fresh learnable tokens in each of the first ``prompt_depth`` layers. Every text prompt is mapped
by its own linear coupling function to a vision prompt, appended to the image tokens at the same
depth, so the two towers' prompts are learned jointly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ppad.backbones.protocol import Backbone
from ppad.errors import SettingsError
from ppad.methods.base import DetectorConfig, PromptDetector
from ppad.prompts import PositionTextPrompt
from ppad.prompts.text import CTX_INIT_STD


@dataclass(frozen=True)
class MaPLeConfig(DetectorConfig):
    """MaPLe's defaults: 2 context tokens, prompts in the first 9 layers, whole image only."""

    region_set: str = "whole"
    n_ctx: int = 2
    prompt_depth: int = 9


class MaPLeModel(PromptDetector):
    def __init__(self, backbone: Backbone, config: MaPLeConfig = MaPLeConfig()) -> None:
        if not backbone.transformer_towers:
            raise SettingsError(
                f"maple puts prompts inside transformer layers of both towers; the backbone "
                f"{backbone.source!r} has a {backbone.architecture.name} image tower that is not a ViT "
                "(use ppad, ppad-text or coop, which work on every backbone)"
            )
        super().__init__(backbone, config)
        text_layers = len(backbone.clip.transformer.resblocks)
        vision_layers = len(backbone.clip.visual.transformer.resblocks)
        self.depth = max(1, min(config.prompt_depth, text_layers, vision_layers))
        self.n_ctx = config.n_ctx
        self.text_prompt = PositionTextPrompt(backbone, self.regions.names, config.classes, config.n_ctx)
        deep = torch.randn(self.depth - 1, config.n_ctx, backbone.text_width, device=self.device) * CTX_INIT_STD
        self.deep_text = nn.Parameter(deep)
        self.couplings = nn.ModuleList(nn.Linear(backbone.text_width, backbone.width) for _ in range(self.depth)).to(
            self.device
        )

    @property
    def plain_views(self) -> frozenset[int]:
        """None: the vision prompts are in every view's tower pass."""
        return frozenset()

    def _text_prompt_at(self, layer: int) -> torch.Tensor:
        return self.text_prompt.ctx[0] if layer == 0 else self.deep_text[layer - 1]

    def compute_text_features(self) -> torch.Tensor:
        clip, prompt = self.backbone.clip, self.text_prompt
        x = prompt() + clip.positional_embedding
        for layer, block in enumerate(clip.transformer.resblocks):
            if 0 < layer < self.depth:
                x = torch.where(prompt.ctx_slot[..., None], self.deep_text[layer - 1][prompt.ctx_index], x)
            x = block(x, attn_mask=clip.attn_mask)
        features = F.normalize(self.backbone.text_head(x, prompt.eot_index), dim=-1)
        return features.reshape(len(self.regions), len(self.config.classes), -1)

    def image_features(
        self, patches: torch.Tensor, region_index: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Vision prompts in the tower's first layers; no region masking (``keep`` unused)."""
        visual = self.backbone.clip.visual
        batch = patches.shape[0]

        def vision_prompt(layer: int) -> torch.Tensor:
            return self.couplings[layer](self._text_prompt_at(layer)).expand(batch, -1, -1)

        x = visual.ln_pre(torch.cat([self.backbone.visual_tokens(patches), vision_prompt(0)], dim=1))
        for layer, block in enumerate(visual.transformer.resblocks):
            if 0 < layer < self.depth:
                x = torch.cat([x[:, : -self.n_ctx], vision_prompt(layer)], dim=1)
            x = block(x)
        return self.backbone.visual_head(x)
