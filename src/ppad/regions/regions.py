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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ppad.choices import SIDES
from ppad.errors import UnknownNameError

# The paper's upper/lower boundary: row 120 of 224.
PAPER_UPPER_FRACTION = 120 / 224
# Patch rule: the fraction of a patch's pixels inside the region → whether the patch is.
PATCH_RULES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
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

    def __post_init__(self) -> None:
        if not (0 <= self.top < self.bottom <= 1 and 0 <= self.left < self.right <= 1):
            raise ValueError(f"region {self.name!r} has an empty or out-of-image rectangle")

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean [height, width] pixel mask (rounded to the nearest pixel row/column)."""
        rows = np.arange(height)
        cols = np.arange(width)
        in_rows = (rows >= round(self.top * height)) & (rows < round(self.bottom * height))
        in_cols = (cols >= round(self.left * width)) & (cols < round(self.right * width))
        return in_rows[:, None] & in_cols[None, :]

    def mirrored(self) -> Region:
        """The same rectangle reflected left ↔ right."""
        return replace(self, left=1 - self.right, right=1 - self.left)


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

    def pixel_masks(self, size: int) -> np.ndarray:
        """[R, size, size] boolean masks."""
        return np.stack([region.mask(size, size) for region in self.regions])

    def patch_masks(self, size: int, patch_size: int) -> torch.Tensor:
        """[R, N] float masks over a ViT's row-major patch grid: 1 = patch inside the region
        by the set's patch rule."""
        masks = torch.from_numpy(self.pixel_masks(size)).float()[:, None]
        coverage = F.avg_pool2d(masks, kernel_size=patch_size, stride=patch_size)
        return PATCH_RULES[self.patch_rule](coverage).float().flatten(1)

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

WHOLE_IMAGE = RegionSet(name="whole", regions=(Region(""),))

REGION_SETS: dict[str, RegionSet] = {region_set.name: region_set for region_set in (PPAD_REGIONS, WHOLE_IMAGE)}


def get_region_set(name: str, sides: str = "anatomical", patch_rule: str = "majority") -> RegionSet:
    """A region set by name, its sides (``"anatomical"`` or ``"image"``) and its patch rule."""
    try:
        regions = REGION_SETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown region set {name!r}; known: {', '.join(sorted(REGION_SETS))}") from None
    if sides not in SIDES:
        raise UnknownNameError(f"unknown region sides {sides!r}; known: {', '.join(SIDES)}")
    return replace(regions.mirrored() if sides == "image" else regions, patch_rule=patch_rule)
