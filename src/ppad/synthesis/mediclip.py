"""MediCLIP's synthesis tasks: Gaussian intensity change, source/sink deformation, identity,
and their mixture (with cut-paste from a support image)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ppad.synthesis.base import SynthesisResult, SynthesisTask, sample_pixel

CHANGE_FLOOR = 1 / 255  # a pixel counts as changed when it moves by more than one 8-bit level


def _distance_grid(shape: tuple[int, int], center: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dy, dx = rows - center[0], cols - center[1]
    return dy, dx, np.hypot(dy, dx)


@dataclass(frozen=True)
class GaussianIntensityChange:
    """Add ``A·exp(−r²/2σ²)``: a smooth bump (A > 0) or dip (A < 0) centred in the region."""

    amplitude: tuple[float, float] = (0.1, 0.4)
    sigma: tuple[float, float] = (0.03, 0.1)  # fraction of the image side
    name: str = "gaussian-intensity"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        center = sample_pixel(region, rng)
        amplitude = float(rng.uniform(*self.amplitude) * rng.choice([-1, 1]))
        sigma = float(rng.uniform(*self.sigma) * min(image.shape))
        _, _, radius = _distance_grid(image.shape, center)
        change = amplitude * np.exp(-(radius**2) / (2 * sigma**2))
        mask = np.abs(change) > CHANGE_FLOOR  # the bump is cut where it drops below one grey level
        out = np.where(mask, np.clip(image + change, 0, 1), image).astype(np.float32)
        return SynthesisResult(out, mask, {"amplitude": amplitude, "sigma": sigma, "center": center})


@dataclass(frozen=True)
class RadialDeformation:
    """Source (content pushed outward from the centre) or sink (pulled inward) inside a disc.

    A pixel at distance ``r < R`` samples the input at distance ``R·(r/R)^p`` along the same ray
    (``p > 1`` source, ``p < 1`` sink); bilinear sampling keeps values within the input's range.
    """

    kind: str = "source"
    radius: tuple[float, float] = (0.06, 0.15)  # fraction of the image side
    strength: tuple[float, float] = (1.5, 3.0)
    name: str = "source"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        center = sample_pixel(region, rng)
        radius = float(rng.uniform(*self.radius) * min(image.shape))
        power = float(rng.uniform(*self.strength))
        power = power if self.kind == "source" else 1 / power
        dy, dx, r = _distance_grid(image.shape, center)
        inside = r < radius
        scale = np.ones_like(r)  # sample radius / own radius; the centre maps to itself
        moving = inside & (r > 0)
        scale[moving] = (r[moving] / radius) ** (power - 1)
        coords = np.stack([center[0] + dy * scale, center[1] + dx * scale])
        warped = ndimage.map_coordinates(image.astype(np.float64), coords, order=1, mode="nearest")
        out = np.where(inside, warped, image).astype(np.float32)
        return SynthesisResult(out, inside, {"radius": radius, "power": power, "center": center})


@dataclass(frozen=True)
class Identity:
    """No change and an empty mask: a normal sample in MediCLIP's task set."""

    name: str = "identity"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        return SynthesisResult(image.astype(np.float32, copy=True), np.zeros(image.shape, dtype=bool), {})


@dataclass(frozen=True)
class Mixture:
    """Each call picks one of ``tasks`` uniformly."""

    tasks: tuple[SynthesisTask, ...]
    name: str = "mixture"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        task = self.tasks[rng.integers(len(self.tasks))]
        result = task(image, region, rng)
        result.params["task"] = task.name
        return result


@dataclass(frozen=True)
class SecondSite:
    """``task``, then with probability ``p`` once more at a second site of the same region, on the
    first result (MediCLIP's training draw); the masks are joined."""

    task: SynthesisTask
    p: float = 0.5
    name: str = "second-site"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        first = self.task(image, region, rng)
        if rng.random() >= self.p:
            return first
        second = self.task(first.image, region, rng)
        return SynthesisResult(second.image, first.mask | second.mask, {"first": first.params, "second": second.params})
