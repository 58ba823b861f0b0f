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

MediCLIP has its own pair (:data:`MEDICLIP_PRESETS`, the method's ``family``): the method as the
authors' code trains it (batch 8, Adam 1e-3 with betas (0.5, 0.999), focal + Dice, their
synthesis draw), with ppad's choices or theirs:

=================  ===============  =================  ==========================================
choice             ``ppad``         ``reference``      meaning
=================  ===============  =================  ==========================================
shots              64               16                 k support normals
epochs             50               200                epochs (validation picks one either way)
causal_text        True             False              the CLIP text transformer's causal mask
=================  ===============  =================  ==========================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, TypeVar

from ppad.errors import UnknownNameError
from ppad.methods.base import DetectorConfig
from ppad.methods.registry import Method, get_method
from ppad.prompts import PROMPT_INIT_STD

Settings = TypeVar("Settings")


class ChoiceSet:
    """What a preset does with its choices: model ones go into a method's config, training ones
    into ``TrainSettings``; :meth:`overriding` derives a variant (named after what it changed)."""

    name: str
    synthesis: str
    model_choices: ClassVar[tuple[str, ...]]

    @classmethod
    def choice_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "name")

    @property
    def training_choices(self) -> tuple[str, ...]:
        return tuple(k for k in self.choice_names() if k not in self.model_choices)

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
        return method.config(**{**{k: getattr(self, k) for k in self.model_choices}, **given})

    def settings(self, settings: Settings) -> Settings:
        """``TrainSettings`` with this preset's training choices."""
        return replace(settings, **{k: getattr(self, k) for k in self.training_choices})


@dataclass(frozen=True)
class Preset(ChoiceSet):
    """The prompt methods' six choices (PPAD, CoOp, MaPLe, …; the table above)."""

    name: str
    region_sides: str = "anatomical"
    patch_rule: str = "majority"
    prompt_init_std: float = PROMPT_INIT_STD
    loss: str = "softmax-bce"
    full_batch: bool = False
    synthesis: str = "sas"
    model_choices: ClassVar[tuple[str, ...]] = ("region_sides", "patch_rule", "prompt_init_std")


@dataclass(frozen=True)
class MediCLIPPreset(ChoiceSet):
    """MediCLIP's training as its authors' code runs it; ``shots``, ``epochs`` and ``causal_text``
    are where ppad's choices and theirs differ."""

    name: str
    shots: int = 64
    epochs: int = 50
    causal_text: bool = True
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: str = "adam"
    loss: str = "focal-dice"
    synthesis: str = "mediclip-train"
    p_anomaly: float = 1.0
    model_choices: ClassVar[tuple[str, ...]] = ("causal_text",)


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
CHOICES = Preset.choice_names()
MEDICLIP_PPAD = MediCLIPPreset("ppad")
MEDICLIP_REFERENCE = MediCLIPPreset("reference", shots=16, epochs=200, causal_text=False)
MEDICLIP_PRESETS: dict[str, MediCLIPPreset] = {p.name: p for p in (MEDICLIP_PPAD, MEDICLIP_REFERENCE)}
#: presets by method family (:attr:`Method.family`)
FAMILIES: dict[str, dict[str, ChoiceSet]] = {"prompt": PRESETS, "mediclip": MEDICLIP_PRESETS}


def get_preset(name: str, family: str = "prompt") -> ChoiceSet:
    try:
        return FAMILIES[family][name]
    except KeyError:
        raise UnknownNameError(f"unknown preset {name!r}; known: {', '.join(FAMILIES[family])}") from None


def preset_for(method: str, preset: ChoiceSet) -> ChoiceSet:
    """``preset`` for ``method``: itself where the method's family has its choices, else that
    family's preset of the same (base) name."""
    family = FAMILIES[get_method(method).family]
    return preset if type(preset) is type(next(iter(family.values()))) else family[preset.name.split("+")[0]]


def preset_ablation() -> list[Preset]:
    """ppad, then each reference choice alone on top of it, then the whole reference preset."""
    return [PPAD, *(PPAD.overriding(**{choice: getattr(REFERENCE, choice)}) for choice in CHOICES), REFERENCE]
