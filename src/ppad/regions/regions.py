"""Position regions: a prompt phrase paired with an image mask.

Regions are data. Each is a rectangle in fractional image coordinates, turned into a pixel mask
for any image size and into a patch mask for any ViT grid.

Side convention (``sides="anatomical"``, the default) — radiological: chest films are displayed
as if facing the patient, so the **patient's left lung appears on the right half of the image**
(PA/AP view). ``"left lung"`` therefore selects the image's right half and ``"right lung"`` its
left half; this matches how radiology reports (CheXzero's pre-training text) use the words.
``sides="image"`` mirrors every region (the authors' code: ``"left lung"`` = image columns
0–111). Upper/lower follow the paper: rows 0–119 and 120–223 of a 224-pixel image.

Patch rule (ViT patch grids only; pixel masks are exact): ``"majority"`` keeps a patch in the
region when at least half of its pixels are, ``"any"`` when any pixel is (the authors' code).

Anatomical sets (``lungs``) give each region an ``anatomy``: its mask is then the film's own
lung field (:mod:`ppad.regions.anatomy`), and the rectangle is the fallback for a film whose
lung mask cannot be trusted. NumPy only: the ONNX runtime composes these masks without PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ppad.choices import SIDES
from ppad.errors import UnknownNameError

# The paper's upper/lower boundary: row 120 of 224.
PAPER_UPPER_FRACTION = 120 / 224
#: What an anatomical region is made of: a lung field, the upper/lower part of both, or the
#: whole image (whose anomalies are placed inside both lung fields).
ANATOMY = ("right", "left", "upper", "lower", "whole")
MIRRORED_ANATOMY = {"right": "left", "left": "right"}
# Patch rule: the fraction of a patch's pixels inside the region (a tensor) → whether the patch is.
PATCH_RULES: dict[str, Callable[[Any], Any]] = {
    "majority": lambda coverage: coverage >= 0.5,
    "any": lambda coverage: coverage > 0,
}


@dataclass(frozen=True)
class Region:
    """A named rectangle ``[top, bottom) × [left, right)`` in fractions of height and width."""

    name: str
    top: float = 0.0
    bottom: float = 1.0
    left: float = 0.0
    right: float = 1.0
    anatomy: str | None = None  # per-film lung-field region (rectangle = fallback); see ANATOMY

    def __post_init__(self) -> None:
        if not (0 <= self.top < self.bottom <= 1 and 0 <= self.left < self.right <= 1):
            raise ValueError(f"region {self.name!r} has an empty or out-of-image rectangle")
        if self.anatomy is not None and self.anatomy not in ANATOMY:
            raise ValueError(f"region {self.name!r} has unknown anatomy {self.anatomy!r}; known: {', '.join(ANATOMY)}")

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean [height, width] pixel mask (rounded to the nearest pixel row/column)."""
        rows = np.arange(height)
        cols = np.arange(width)
        in_rows = (rows >= round(self.top * height)) & (rows < round(self.bottom * height))
        in_cols = (cols >= round(self.left * width)) & (cols < round(self.right * width))
        return in_rows[:, None] & in_cols[None, :]

    def mirrored(self) -> Region:
        """The same rectangle (and lung field) reflected left ↔ right."""
        anatomy = MIRRORED_ANATOMY.get(self.anatomy, self.anatomy)
        return replace(self, left=1 - self.right, right=1 - self.left, anatomy=anatomy)


@dataclass(frozen=True)
class RegionSet:
    """An ordered set of regions; the order fixes each region's index in batches."""

    name: str
    regions: tuple[Region, ...]
    patch_rule: str = "majority"

    def __post_init__(self) -> None:
        if self.patch_rule not in PATCH_RULES:
            raise UnknownNameError(f"unknown patch rule {self.patch_rule!r}; known: {', '.join(PATCH_RULES)}")

    @property
    def names(self) -> list[str]:
        return [region.name for region in self.regions]

    def __len__(self) -> int:
        return len(self.regions)

    @property
    def fallback(self) -> str:
        """What an anatomical set's views become on a film whose lung mask is not trusted: the image
        halves (the named views' rectangles), or the whole film for a set of the whole view alone."""
        return "halves" if any(region.name for region in self.regions) else "whole film"

    @property
    def per_film(self) -> bool:
        """Whether the masks are each film's own lung fields (else fixed rectangles)."""
        return any(region.anatomy is not None for region in self.regions)

    def pixel_masks(self, size: int) -> np.ndarray:
        """[R, size, size] boolean masks (an anatomical set's fallback rectangles)."""
        return np.stack([region.mask(size, size) for region in self.regions])

    def mirrored(self) -> RegionSet:
        """Every region reflected left ↔ right (names kept)."""
        return replace(self, regions=tuple(region.mirrored() for region in self.regions))


PPAD_REGIONS = RegionSet(
    name="ppad",
    regions=(
        Region("left lung", left=0.5),  # patient's left = image right
        Region("right lung", right=0.5),  # patient's right = image left
        Region("upper lung", bottom=PAPER_UPPER_FRACTION),
        Region("lower lung", top=PAPER_UPPER_FRACTION),
        Region(""),  # whole image, no position words, no image masking
    ),
)

LUNG_REGIONS = RegionSet(
    name="lungs",
    regions=(
        Region("left lung", left=0.5, anatomy="left"),
        Region("right lung", right=0.5, anatomy="right"),
        Region("upper lung", bottom=PAPER_UPPER_FRACTION, anatomy="upper"),
        Region("lower lung", top=PAPER_UPPER_FRACTION, anatomy="lower"),
        Region("", anatomy="whole"),
    ),
)

WHOLE_IMAGE = RegionSet(name="whole", regions=(Region(""),))
#: One view on both lung fields (the whole image where the mask is not trusted): MediCLIP's, whose
#: score is its map's maximum there, as its lung-restricted map shows.
LUNG_FIELDS = RegionSet(name="lung-fields", regions=(Region("", anatomy="whole"),))

REGION_SETS: dict[str, RegionSet] = {
    region_set.name: region_set for region_set in (PPAD_REGIONS, LUNG_REGIONS, WHOLE_IMAGE, LUNG_FIELDS)
}


def get_region_set(name: str, sides: str = "anatomical", patch_rule: str = "majority") -> RegionSet:
    """A region set by name, its sides (``"anatomical"`` or ``"image"``) and its patch rule."""
    try:
        regions = REGION_SETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown region set {name!r}; known: {', '.join(sorted(REGION_SETS))}") from None
    if sides not in SIDES:
        raise UnknownNameError(f"unknown region sides {sides!r}; known: {', '.join(SIDES)}")
    return replace(regions.mirrored() if sides == "image" else regions, patch_rule=patch_rule)
