"""Presets: ppad's own choices and the authors' (issue 10), each choice also settable alone.

Model choices go into the method's :class:`~ppad.methods.base.DetectorConfig` (saved in
``config.json``, used at scoring time); training choices into ``TrainSettings``. Both end up in
the run's identity, so runs made with different choices never share a folder.

=================  ===============  =================  ==========================================
choice             ``ppad``         ``reference``      meaning
=================  ===============  =================  ==========================================
region_sides       anatomical       image              ``"left lung"`` = image right / image left
patch_rule         majority         any                ViT patch in a region: ≥ 50 % / any pixel
prompt_init_std    0.02             0.2                image prompt initialised N(0, std²)
loss               softmax-bce      two-sigmoid        BCE on softmax p(abnormal) / on each logit
full_batch         False            True               batch = all shots (one step per epoch)
synthesis          sas              sas-reference      SAS mask geometry (ppad's / the authors')
=================  ===============  =================  ==========================================

Both keep fp32 and select the epoch on validation, never on the test split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

from ppad.errors import UnknownNameError
from ppad.methods.base import DetectorConfig
from ppad.methods.registry import Method
from ppad.prompts import PROMPT_INIT_STD

MODEL_CHOICES = ("region_sides", "patch_rule", "prompt_init_std")
TRAINING_CHOICES = ("loss", "full_batch", "synthesis")
Settings = TypeVar("Settings")


@dataclass(frozen=True)
class Preset:
    """A named set of the six choices; :meth:`overriding` derives a variant (named after it)."""

    name: str
    region_sides: str = "anatomical"
    patch_rule: str = "majority"
    prompt_init_std: float = PROMPT_INIT_STD
    loss: str = "softmax-bce"
    full_batch: bool = False
    synthesis: str = "sas"

    def choices(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "name"}

    def overriding(self, **choices: Any) -> Preset:
        """This preset with the given choices (``None`` = keep); each change is added to the name."""
        changed = {k: v for k, v in choices.items() if v is not None and getattr(self, k) != v}
        name = "".join([self.name, *(f"+{k}={v}" for k, v in changed.items())])
        return replace(self, name=name, **changed)

    def config(self, method: Method, **overrides: Any) -> DetectorConfig:
        """``method``'s settings with this preset's model choices, then ``overrides`` (``None`` =
        keep), applied where the method has them."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return method.config(**{**{k: getattr(self, k) for k in MODEL_CHOICES}, **given})

    def settings(self, settings: Settings) -> Settings:
        """``TrainSettings`` with this preset's training choices."""
        return replace(settings, **{k: getattr(self, k) for k in TRAINING_CHOICES})


PPAD = Preset("ppad")
REFERENCE = Preset(
    "reference",
    region_sides="image",
    patch_rule="any",
    prompt_init_std=0.2,
    loss="two-sigmoid",
    full_batch=True,
    synthesis="sas-reference",
)
PRESETS: dict[str, Preset] = {preset.name: preset for preset in (PPAD, REFERENCE)}
CHOICES = tuple(f.name for f in fields(Preset) if f.name != "name")


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def preset_ablation() -> list[Preset]:
    """ppad, then each reference choice alone on top of it, then the whole reference preset."""
    return [PPAD, *(PPAD.overriding(**{choice: getattr(REFERENCE, choice)}) for choice in CHOICES), REFERENCE]
