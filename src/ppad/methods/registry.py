"""Detection methods found by name; each is a model class plus its default settings."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ppad.backbones.protocol import Backbone
from ppad.errors import UnknownNameError
from ppad.methods.base import DetectorConfig, PromptDetector
from ppad.methods.maple import MaPLeConfig, MaPLeModel
from ppad.methods.mediclip import MediCLIPConfig, MediCLIPModel
from ppad.methods.memory import KnnConfig, KnnModel, with_memory
from ppad.methods.patch_memory import PatchKnnConfig, PatchKnnModel
from ppad.methods.ppad import PPADConfig, PPADModel
from ppad.methods.zeroshot import ZeroShotConfig, ZeroShotModel


@dataclass(frozen=True)
class Method:
    name: str
    model: type[PromptDetector]
    defaults: DetectorConfig
    summary: str
    family: str = "prompt"  # whose presets train it (:data:`ppad.methods.presets.FAMILIES`)

    def config(self, **overrides: Any) -> DetectorConfig:
        """The defaults with every override that this method has a setting for (``None`` = keep)."""
        known = {f.name for f in fields(self.defaults)}
        return replace(self.defaults, **{k: v for k, v in overrides.items() if k in known and v is not None})

    def config_from_dict(self, data: dict[str, Any]) -> DetectorConfig:
        return type(self.defaults).from_dict(data)

    def build(self, backbone: Backbone, config: DetectorConfig | None = None) -> PromptDetector:
        return self.model(backbone, config or self.defaults)


PROMPT_METHODS = (
    Method("ppad", PPADModel, PPADConfig(), "position-guided text prompt + image prompt (PPAD)"),
    Method("ppad-text", PPADModel, PPADConfig(image_prompt=False), "position-guided text prompt only"),
    Method("coop", PPADModel, PPADConfig(region_set="whole", image_prompt=False), "learnable text context only (CoOp)"),
    Method("maple", MaPLeModel, MaPLeConfig(), "deep text + coupled vision prompts (MaPLe)"),
    Method("zeroshot", ZeroShotModel, ZeroShotConfig(), "no training: normal vs abnormal prompt (CheXzero)"),
    Method(
        "mediclip",
        MediCLIPModel,
        MediCLIPConfig(),
        "adapters on patch features + class prompts, trained pixel by pixel (MediCLIP)",
        family="mediclip",
    ),
)
MEMORY_METHODS = (
    Method("knn", KnnModel, KnnConfig(), "few-shot visual memory: distance to the nearest support normal"),
    Method(
        "patch-knn",
        PatchKnnModel,
        PatchKnnConfig(),
        "patch memory inside the lung fields: each location's distance to the nearest support patch",
    ),
    *(
        Method(f"{m.name}+knn", with_memory(m.model), m.defaults, f"{m.name} fused with the few-shot memory", m.family)
        for m in PROMPT_METHODS
    ),
)
METHODS: dict[str, Method] = {method.name: method for method in (*PROMPT_METHODS, *MEMORY_METHODS)}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None
