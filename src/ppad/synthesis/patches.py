"""Patch-based synthesis: FPI/PII, CutPaste (+ scar, + from a support image), AnatPaste-style.

All boxes are centred inside the region; sources (other normal images) are drawn from the
task's ``sources`` array when it needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from skimage.transform import rotate

from ppad.synthesis.base import SynthesisResult, sample_pixel


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, dtype=bool)
        mask[self.slices] = True
        return mask


def random_box(
    shape: tuple[int, int],
    center: tuple[int, int] | None,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.02, 0.15),
    aspect: tuple[float, float] = (0.3, 3.3),
) -> Box:
    """A box of ``area`` × image area and log-uniform ``aspect`` (h/w), moved inside the image,
    around ``center`` (or anywhere when ``None``)."""
    rows, cols = shape
    size = rng.uniform(*area) * rows * cols
    ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))
    height = int(np.clip(round(np.sqrt(size * ratio)), 2, rows))
    width = int(np.clip(round(np.sqrt(size / ratio)), 2, cols))
    if center is None:
        center = (int(rng.integers(rows)), int(rng.integers(cols)))
    return place(shape, center, (height, width))


def place(shape: tuple[int, int], center: tuple[int, int], size: tuple[int, int]) -> Box:
    """A ``size`` box centred at ``center``, shifted to lie inside an image of ``shape``."""
    height, width = size
    top = int(np.clip(center[0] - height // 2, 0, shape[0] - height))
    left = int(np.clip(center[1] - width // 2, 0, shape[1] - width))
    return Box(top, left, height, width)


def pick_source(sources: np.ndarray | None, rng: np.random.Generator, name: str) -> np.ndarray:
    if sources is None or len(sources) == 0:
        raise ValueError(f"synthesis {name!r} needs source images (other normal images)")
    return sources[rng.integers(len(sources))]


def linear_blend(target: np.ndarray, source: np.ndarray, alpha: float) -> np.ndarray:
    return (1 - alpha) * target + alpha * source


@dataclass(frozen=True)
class ForeignPatchBlend:
    """A box centred in the region blended with the same box of another normal image ``y``.

    FPI (Tan et al. 2020) blends intensities, ``(1 − α)·x + α·y`` with ``α ~ U(0, 1)``; PII
    (Tan et al. 2021) passes :func:`ppad.synthesis.poisson.poisson_blend` to blend gradients.
    """

    blend: Callable[[np.ndarray, np.ndarray, float], np.ndarray] = linear_blend
    alpha: tuple[float, float] = (0.0, 1.0)
    sources: np.ndarray | None = None
    name: str = "fpi"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        foreign = pick_source(self.sources, rng, self.name)
        box = random_box(image.shape, sample_pixel(region, rng), rng)
        alpha = float(rng.uniform(*self.alpha))
        out = image.astype(np.float32, copy=True)
        out[box.slices] = np.clip(self.blend(image[box.slices], foreign[box.slices], alpha), 0, 1)
        return SynthesisResult(out, box.mask(image.shape), {"alpha": alpha, "box": box})


def scar_patch(image: np.ndarray, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A thin rectangle (width 2–16, length 10–25 px at 256 px) cut anywhere, rotated ±45°."""
    width = max(1, int(round(rng.uniform(2, 16) * scale)))
    length = max(2, int(round(rng.uniform(10, 25) * scale)))
    top = int(rng.integers(0, image.shape[0] - length + 1))
    left = int(rng.integers(0, image.shape[1] - width + 1))
    patch = image[top : top + length, left : left + width]
    angle = float(rng.uniform(-45, 45))
    rotated = rotate(patch, angle, resize=True, order=1, preserve_range=True)
    footprint = rotate(np.ones_like(patch), angle, resize=True, order=0, preserve_range=True) > 0.5
    return rotated.astype(np.float32), footprint


@dataclass(frozen=True)
class CutPaste:
    """CutPaste (Li et al. 2021): a box cut from the image (or from a support image) and pasted
    with its centre in the region; ``scar`` pastes a thin rotated strip with intensity jitter."""

    scar: bool = False
    from_support: bool = False
    sources: np.ndarray | None = None
    name: str = "cutpaste"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        source = pick_source(self.sources, rng, self.name) if self.from_support else image
        if self.scar:
            patch, footprint = scar_patch(source, rng, image.shape[0] / 256)
            patch = np.clip(patch * rng.uniform(0.8, 1.2), 0, 1)
        else:
            cut = random_box(image.shape, None, rng)
            patch, footprint = source[cut.slices], np.ones((cut.height, cut.width), dtype=bool)
        target = place(image.shape, sample_pixel(region, rng), patch.shape)
        mask = np.zeros(image.shape, dtype=bool)
        mask[target.slices] = footprint
        out = image.astype(np.float32, copy=True)
        out[mask] = patch[footprint]
        return SynthesisResult(out, mask, {"box": target})


def segmented_lungs(image: np.ndarray) -> np.ndarray:
    """Both lung fields of a film from the shipped segmenter; empty when its mask is not trusted."""
    from ppad.lungs.frames import shipped_frame_lung_fields

    fields = shipped_frame_lung_fields()(image[None])[0]
    return fields.mask if fields.trusted else np.zeros(image.shape, dtype=bool)


@dataclass(frozen=True)
class AnatPaste:
    """AnatPaste-style (Sato et al. 2023): a patch of the image blended in only where the lung
    fields are (the shipped segmenter's; the whole region where its mask is not trusted),
    ``(1 − α)·x + α·patch`` with ``α ~ U(0.3, 1)``."""

    name: str = "anatpaste"
    lungs: Callable[[np.ndarray], np.ndarray] = segmented_lungs

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        lungs = self.lungs(image)
        allowed = region & lungs if (region & lungs).any() else region
        target = random_box(image.shape, sample_pixel(allowed, rng), rng)
        cut = place(
            image.shape,
            (int(rng.integers(image.shape[0])), int(rng.integers(image.shape[1]))),
            (target.height, target.width),
        )
        mask = target.mask(image.shape) & lungs if lungs.any() else target.mask(image.shape)
        alpha = float(rng.uniform(0.3, 1.0))
        blended = np.zeros(image.shape, dtype=np.float32)
        blended[target.slices] = (1 - alpha) * image[target.slices] + alpha * image[cut.slices]
        out = np.where(mask, blended, image).astype(np.float32)
        return SynthesisResult(out, mask, {"alpha": alpha, "box": target, "lungs": lungs})
