"""An anatomical region set's masks on one film, from that film's lung fields (NumPy only).

Trusted lung fields give: the patient's right and left lung fields; the upper and lower lung
field (both lungs, split at the middle of their own height on this film); and for the whole
image, both lung fields — where a whole-view anomaly is placed and the memory pools; the whole
view itself still shows the image unmasked. A film whose lung mask is not trusted gets every
region's fallback rectangle (the image halves, the paper's upper/lower split, the whole image).
"""

from __future__ import annotations

import numpy as np

from ppad.lungs.postprocess import LungFields
from ppad.regions.regions import Region, RegionSet


def upper_lower_split(lungs: np.ndarray) -> int:
    """The first row of the lower lung field: the middle of the lung fields' own height."""
    rows = np.flatnonzero(lungs.any(axis=1))
    return int((rows[0] + rows[-1] + 1) // 2)


def region_on_film(region: Region, fields: LungFields) -> np.ndarray:
    """[H, W] boolean mask of ``region`` on a film with these lung fields."""
    if region.anatomy is None or not fields.trusted:
        return region.mask(*fields.lung_right.shape)
    lungs = fields.mask
    if region.anatomy in ("right", "left"):
        return (fields.lung_right if region.anatomy == "right" else fields.lung_left).copy()
    if region.anatomy == "whole":
        return lungs.copy()
    split = upper_lower_split(lungs)
    rows = np.arange(lungs.shape[0])[:, None]
    return lungs & (rows < split if region.anatomy == "upper" else rows >= split)


def film_region_masks(regions: RegionSet, fields: list[LungFields]) -> np.ndarray:
    """[N, R, H, W] boolean masks of every region on every film (where anomalies go)."""
    return np.stack([np.stack([region_on_film(region, film) for region in regions.regions]) for film in fields])
