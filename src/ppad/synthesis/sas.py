"""SAS — structure-preserving anomaly synthesis (PPAD, MICCAI 2024).

Inside an irregular mask the image is gamma-corrected, ``I^γ`` with
``γ(x) = 1 + D(x) / max D · w``, where ``D`` is the distance to the mask boundary and ``w`` is
drawn from ``{−0.999, −0.99, 2, 3}``; outside the mask (and on its boundary) ``γ = 1``. Only
intensities change — the anatomy under the mask stays where it was. For images in [0, 1],
``w > 0`` darkens and ``w < 0`` brightens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ppad.synthesis.base import SynthesisResult, sample_pixel
from ppad.synthesis.shapes import MAX_ATTEMPTS, bounding_box, irregular_mask

PAPER_GAMMA_WEIGHTS: tuple[float, ...] = (-0.999, -0.99, 2.0, 3.0)


def boundary_distance(mask: np.ndarray) -> np.ndarray:
    """Distance of each mask pixel to the mask's boundary ring (0 on the ring and outside).

    The image border counts as boundary, so a mask cut by the border still fades to γ = 1.
    Computed inside the mask's bounding box.
    """
    distance = np.zeros(mask.shape, dtype=np.float32)
    if not mask.any():
        return distance
    box = bounding_box(mask)
    padded = np.pad(mask[box], 1, constant_values=False)
    distance[box] = np.clip(ndimage.distance_transform_edt(padded)[1:-1, 1:-1] - 1.0, 0.0, None)
    return distance


def gamma_map(distance: np.ndarray, weight: float) -> np.ndarray:
    """γ(x) = 1 + D(x)/max D · w from a boundary-distance map D (γ = 1 where D = 0)."""
    peak = distance.max()
    if peak == 0:
        return np.ones(distance.shape, dtype=np.float32)
    return (1.0 + distance / peak * weight).astype(np.float32)


@dataclass(frozen=True)
class StructurePreservingSynthesis:
    """SAS with the paper's weights; the anomaly's centre is drawn inside the region."""

    weights: tuple[float, ...] = PAPER_GAMMA_WEIGHTS
    size_range: tuple[float, float] = (0.1, 0.35)  # mask diameter as a fraction of the image side
    n_points: int = 10
    name: str = "sas"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        side = min(image.shape)
        for _ in range(MAX_ATTEMPTS):
            center = sample_pixel(region, rng)
            diameter = int(round(rng.uniform(*self.size_range) * side))
            mask = irregular_mask(image.shape, center, diameter, rng, n_points=self.n_points)
            distance = boundary_distance(mask)
            if distance.max() > 0:
                break
        else:
            raise RuntimeError("SAS could not draw a mask thicker than its boundary")
        weight = float(rng.choice(self.weights))
        gamma = gamma_map(distance, weight)
        out = np.clip(image, 0.0, 1.0).astype(np.float32)
        changed = gamma != 1.0  # γ = 1 leaves pixels bit-identical
        out[changed] = np.power(out[changed], gamma[changed])
        return SynthesisResult(
            image=out,
            mask=mask,
            params={"w": weight, "center": center, "diameter": diameter, "gamma": gamma},
        )
