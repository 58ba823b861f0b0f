"""Map methods by name, and :func:`anomaly_maps`, which runs one over a batch of images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ppad.choices import DEFAULT_MAP_METHOD, MAP_AUTO_ORDER
from ppad.errors import SettingsError, UnknownNameError
from ppad.maps import dense, perturbation
from ppad.maps.lungs import restrict_to_lungs, segment_lungs
from ppad.methods.base import PromptDetector
from ppad.methods.inference import map_batches

if TYPE_CHECKING:
    from ppad.lungs import LungFields


@dataclass(frozen=True)
class MapMethod:
    name: str
    summary: str
    compute: Callable[[PromptDetector, torch.Tensor], torch.Tensor]  # normalised [B, 3, S, S] → [B, h, w]
    applies: Callable[[PromptDetector], bool] = lambda model: True
    meaning: str = ""  # what a high value means, for a reader of the overlay's colour scale


MAP_METHODS: dict[str, MapMethod] = {
    m.name: m
    for m in (
        MapMethod(
            "mediclip",
            "MediCLIP: each pixel's abnormal probability from the adapted patch features (its score is the maximum)",
            dense.mediclip_map,
            lambda model: hasattr(model, "anomaly_map"),
            "bright = the pixel's probability of 'abnormal' against 'normal' (0-1)",
        ),
        MapMethod(
            "patches",
            "patch memory: each location's distance to its nearest support patch (its score is the top-k mean)",
            dense.patch_memory_map,
            dense.has_patch_memory,
            "bright = least like any patch of the support normals (cosine distance)",
        ),
        MapMethod(
            "text",
            "dual tower: each location's share of the whole-image abnormal log-odds (exact CAM)",
            dense.text_map,
            lambda model: dense.is_dual_tower(model) and dense.has_text(model),
            "bright = pushes the film's abnormal log-odds up (the text prompts' 'abnormal' side)",
        ),
        MapMethod(
            "memory",
            "dual tower: each location's share of the distance to the nearest support normal",
            dense.memory_map,
            lambda model: dense.is_dual_tower(model) and dense.has_memory(model),
            "bright = least like the same place in the nearest support normal (share of its distance)",
        ),
        MapMethod(
            "gradient",
            "input × gradient of the views' abnormal log-odds (any model)",
            perturbation.gradient_map,
            meaning="bright = pixels whose intensity pushes the abnormal log-odds up",
        ),
        MapMethod(
            "sweep",
            "the image prompt outside each small window, scored at the position views (ppad)",
            perturbation.sweep_map,
            lambda model: getattr(model, "image_prompt", None) is not None,
            "bright = the views call the film more abnormal when they see only this window",
        ),
    )
}


def get_map_method(name: str) -> MapMethod:
    try:
        return MAP_METHODS[name]
    except KeyError:
        raise UnknownNameError(f"unknown map method {name!r}; known: {', '.join(MAP_METHODS)}") from None


def resolve_map_method(model: PromptDetector, name: str = DEFAULT_MAP_METHOD) -> str:
    """``auto`` → the first of :data:`~ppad.choices.MAP_AUTO_ORDER` that applies; any other name is checked
    to apply."""
    if name == "auto":
        return next(n for n in MAP_AUTO_ORDER if MAP_METHODS[n].applies(model))
    chosen = get_map_method(name)
    if not chosen.applies(model):
        raise SettingsError(f"map method {name!r} does not apply to this model: {chosen.summary}")
    return name


def anomaly_maps(
    model: PromptDetector,
    images: np.ndarray,
    method: str = DEFAULT_MAP_METHOD,
    batch_size: int = 16,
    lungs: bool = True,
    fields: Sequence[LungFields] | None = None,
) -> np.ndarray:
    """[N, S, S] images in [0, 1] → [N, S, S] float32 maps in the same (preprocessed) frame.

    With ``lungs`` (the default) each map is restricted to its film's lung fields where the mask is
    trusted (:func:`~ppad.maps.lungs.restrict_to_lungs`); ``fields`` are the images' lung fields
    when already segmented (:func:`~ppad.maps.lungs.segment_lungs`), else they are segmented here."""
    chosen = get_map_method(resolve_map_method(model, method))
    size = images.shape[-1]

    def draw(batch: torch.Tensor, _masks: torch.Tensor | None) -> np.ndarray:
        amap = chosen.compute(model, batch)[:, None].float()
        return F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=False)[:, 0].cpu().numpy()

    maps = np.concatenate([np.zeros((0, size, size), dtype=np.float32), *map_batches(model, images, draw, batch_size)])
    if not lungs:
        return maps
    return restrict_to_lungs(maps, segment_lungs(images) if fields is None else fields)


def applicable_map_methods(model: PromptDetector) -> list[str]:
    """The map methods that work for ``model``, in registry order."""
    return [name for name, m in MAP_METHODS.items() if m.applies(model)]
