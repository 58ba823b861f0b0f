"""SAS — structure-preserving anomaly synthesis (PPAD, MICCAI 2024).

Inside an irregular mask the image is gamma-corrected, ``I^γ`` with
``γ(x) = 1 + D(x) / max D · w``, where ``D`` is the distance to the mask boundary and ``w`` is
drawn from ``{−0.999, −0.99, 2, 3}``; outside the mask (and on its boundary) ``γ = 1``. Only
intensities change — the anatomy under the mask stays where it was. For images in [0, 1],
``w > 0`` darkens and ``w < 0`` brightens.

The mask's geometry is pluggable (:mod:`ppad.synthesis.shapes`): ``sas`` draws ppad's blob inside
the region, ``sas-reference`` the authors' larger shapes in the image's central box, with γ not
fading at the image edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ppad.synthesis.base import SynthesisResult
from ppad.synthesis.shapes import MAX_ATTEMPTS, MaskGeometry, RegionBlob, bounding_box

PAPER_GAMMA_WEIGHTS: tuple[float, ...] = (-0.999, -0.99, 2.0, 3.0)


def boundary_distance(mask: np.ndarray, fade_at_edge: bool = True) -> np.ndarray:
    """Distance of each mask pixel to the mask's boundary ring (0 on the ring and outside).

    With ``fade_at_edge`` the image border counts as boundary, so a mask cut by the border still
    fades to γ = 1; without it the mask continues past the border. Computed inside the mask's
    bounding box.
    """
    distance = np.zeros(mask.shape, dtype=np.float32)
    if not mask.any():
        return distance
    box = bounding_box(mask)
    # one False pixel beyond each box side, except beyond the image border when it does not fade
    pad = [(int(fade_at_edge or s.start > 0), int(fade_at_edge or s.stop < n)) for s, n in zip(box, mask.shape)]
    padded = np.pad(mask[box], pad, constant_values=False)
    inner = tuple(slice(before, size - after) for (before, after), size in zip(pad, padded.shape))
    distance[box] = np.clip(ndimage.distance_transform_edt(padded)[inner] - 1.0, 0.0, None)
    return distance


def gamma_map(distance: np.ndarray, weight: float) -> np.ndarray:
    """γ(x) = 1 + D(x)/max D · w from a boundary-distance map D (γ = 1 where D = 0)."""
    peak = distance.max()
    if peak == 0:
        return np.ones(distance.shape, dtype=np.float32)
    return (1.0 + distance / peak * weight).astype(np.float32)


@dataclass(frozen=True)
class StructurePreservingSynthesis:
    """SAS with the paper's weights; by default the anomaly's centre is drawn inside the region."""

    weights: tuple[float, ...] = PAPER_GAMMA_WEIGHTS
    geometry: MaskGeometry = RegionBlob()
    fade_at_edge: bool = True  # γ = 1 where the mask meets the image border
    name: str = "sas"

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult:
        for _ in range(MAX_ATTEMPTS):
            mask, where = self.geometry.draw(image.shape, region, rng)
            distance = boundary_distance(mask, self.fade_at_edge)
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
            params={"w": weight, **where, "gamma": gamma},
        )
