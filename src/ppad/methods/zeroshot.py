"""CheXzero-style zero-shot scoring: softmax over a normal and an abnormal text prompt."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ppad.backbones.protocol import Backbone
from ppad.choices import TEMPLATES
from ppad.errors import SettingsError
from ppad.methods.base import DetectorConfig, PromptDetector


@dataclass(frozen=True)
class ZeroShotConfig(DetectorConfig):
    """``words``: the class words as prompts ("normal" / "pneumonia");
    ``chexzero``: CheXzero's pair "no {abnormal}" / "{abnormal}"."""

    region_set: str = "whole"
    template: str = "words"


def zero_shot_prompts(config: ZeroShotConfig) -> list[str]:
    normal, abnormal = config.classes
    if config.template == "words":
        return [normal, abnormal]
    if config.template == "chexzero":
        return [f"no {abnormal}", abnormal]
    raise SettingsError(f"template must be one of {TEMPLATES}, got {config.template!r}")


class ZeroShotModel(PromptDetector):
    """No learnable parameters; one whole-image view."""

    def __init__(self, backbone: Backbone, config: ZeroShotConfig = ZeroShotConfig()) -> None:
        super().__init__(backbone, config)
        tokens = backbone.tokenize(zero_shot_prompts(config)).to(self.device)
        with torch.no_grad():
            features = F.normalize(backbone.encode_text(tokens), dim=-1)
        self.register_buffer("fixed_text", features.expand(len(self.regions), -1, -1).clone(), persistent=False)

    def compute_text_features(self) -> torch.Tensor:
        return self.fixed_text
