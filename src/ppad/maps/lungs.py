"""Anomaly maps restricted to the lung fields found by the shipped segmenter (:mod:`ppad.lungs`).

On a film whose lung mask is trusted, every map value outside the lung fields is set to the map's
minimum inside them, so nothing outside the lungs (the film's border, labels, the neck) can be the
map's maximum. A film whose mask is not trusted keeps its whole map, and its legend says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ppad.backbones.preprocessing import Preprocessing
from ppad.lungs.frames import shipped_frame_lung_fields
from ppad.lungs.postprocess import LungFields
from ppad.maps.geometry import mask_to_original


def segment_lungs(images: np.ndarray) -> list[LungFields]:
    """Lung fields of [N, S, S] images in [0, 1], in the same frame (each film segmented once per
    process: :func:`~ppad.lungs.frames.shipped_frame_lung_fields`)."""
    return shipped_frame_lung_fields()(images)


def restrict_to_lungs(maps: np.ndarray, fields: Sequence[LungFields]) -> np.ndarray:
    """[N, S, S] maps with each film's values outside its trusted lung fields set to its minimum
    inside them; the maps of films whose mask is not trusted are returned unchanged."""
    if len(maps) != len(fields):
        raise ValueError(f"need one lung mask per map (got {len(fields)} masks for {len(maps)} maps)")
    out = maps.copy()
    for amap, lungs in zip(out, fields):
        if amap.shape != lungs.mask.shape:
            raise ValueError(f"map {amap.shape} and lung mask {lungs.mask.shape} must share the frame")
        if lungs.trusted:
            amap[~lungs.mask] = amap[lungs.mask].min()
    return out


def lungs_on_film(fields: LungFields, shape: tuple[int, int], preprocessing: Preprocessing) -> np.ndarray | None:
    """A film's trusted lung fields (found in the maps' frame) on its own [H, W] pixels; None if not trusted."""
    return mask_to_original(fields.mask, shape, preprocessing) if fields.trusted else None


def legend_meaning(meaning: str, fields: LungFields | None) -> str:
    """A map's legend text, saying whether it was restricted to the lungs (``None``: not asked)."""
    if fields is None:
        return meaning
    if fields.trusted:
        return f"{meaning}; outside the lung fields: the in-lung minimum"
    return f"{meaning}; whole film (lung fields not trusted: {fields.reason})"
