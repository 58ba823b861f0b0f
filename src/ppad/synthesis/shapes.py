"""Irregular anomaly masks: Perlin-distributed points → convex hull → Bézier-bent edges → fill."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.draw import polygon as fill_polygon

from ppad.synthesis.perlin import perlin_noise

MAX_ATTEMPTS = 20


def perlin_points(center: tuple[int, int], diameter: int, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """``n_points`` (row, col) points drawn in a box around ``center`` with density ∝ Perlin noise²."""
    side = max(int(diameter), 4)
    cells = int(rng.integers(2, 5))
    noise = perlin_noise((side, side), (cells, cells), rng)
    density = (noise - noise.min()) ** 2
    density = density.ravel() / density.sum()
    picks = rng.choice(density.size, size=n_points, replace=False, p=density)
    rows, cols = np.unravel_index(picks, (side, side))
    offset = np.array(center, dtype=float) - side / 2
    jitter = rng.uniform(0, 1, size=(n_points, 2))  # sub-pixel positions inside each picked pixel
    return np.stack([rows, cols], axis=1) + jitter + offset


def bezier_outline(
    vertices: np.ndarray, rng: np.random.Generator, bend: tuple[float, float], samples: int = 16
) -> np.ndarray:
    """Replace each polygon edge by a quadratic Bézier curve bent along the edge normal.

    The control point sits at the edge midpoint, moved outward by ``u × edge length`` with
    ``u ~ U(bend)`` (negative ``u`` bends inward).
    """
    start = vertices
    end = np.roll(vertices, -1, axis=0)
    edge = end - start
    length = np.linalg.norm(edge, axis=1, keepdims=True)
    normal = np.stack([edge[:, 1], -edge[:, 0]], axis=1) / np.maximum(length, 1e-9)
    middle = (start + end) / 2
    outward = np.sign(np.sum(normal * (middle - vertices.mean(axis=0)), axis=1, keepdims=True))
    control = middle + outward * normal * length * rng.uniform(*bend, size=(len(vertices), 1))
    t = np.linspace(0, 1, samples, endpoint=False)[None, :, None]
    curve = (1 - t) ** 2 * start[:, None] + 2 * (1 - t) * t * control[:, None] + t**2 * end[:, None]
    return curve.reshape(-1, 2)


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (np.argmax(sizes) + 1)


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The smallest row/column slices holding every True pixel of a non-empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _fill_outline(outline: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fill a closed outline, keeping its largest connected piece; works in the outline's box."""
    mask = np.zeros(shape, dtype=bool)
    low = np.clip(np.floor(outline.min(axis=0)).astype(int), 0, None)
    high = np.minimum(np.ceil(outline.max(axis=0)).astype(int) + 1, shape)
    if np.any(high <= low):
        return mask
    local = np.zeros(tuple(high - low), dtype=bool)
    rows, cols = fill_polygon(outline[:, 0] - low[0], outline[:, 1] - low[1], local.shape)
    local[rows, cols] = True
    mask[low[0] : high[0], low[1] : high[1]] = largest_component(ndimage.binary_fill_holes(local))
    return mask


def irregular_mask(
    shape: tuple[int, int],
    center: tuple[int, int],
    diameter: int,
    rng: np.random.Generator,
    n_points: int = 10,
    bend: tuple[float, float] = (-0.2, 0.4),
) -> np.ndarray:
    """One connected, filled, irregular boolean mask of ``shape`` containing ``center``'s surroundings."""
    for _ in range(MAX_ATTEMPTS):
        points = perlin_points(center, diameter, n_points, rng)
        try:
            hull = ConvexHull(points)
        except QhullError:
            continue
        outline = bezier_outline(points[hull.vertices], rng, bend)
        mask = _fill_outline(outline, shape)
        if mask.sum() >= 9:
            return mask
    raise RuntimeError(
        f"could not draw an irregular mask of diameter {diameter} at {center} in {MAX_ATTEMPTS} attempts"
    )
