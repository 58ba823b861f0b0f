"""The anomaly-synthesis interface: (image, region mask, rng) → (image, anomaly mask)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class SynthesisResult:
    """A synthesised image in [0, 1], the boolean mask of changed pixels, and the draw's parameters."""

    image: np.ndarray
    mask: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


class SynthesisTask(Protocol):
    """A seeded anomaly generator. ``region`` is a boolean mask the anomaly must start in."""

    name: str

    def __call__(self, image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> SynthesisResult: ...


def sample_pixel(region: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A uniformly drawn (row, col) inside a boolean mask."""
    flat = np.flatnonzero(region)
    if flat.size == 0:
        raise ValueError("the region mask is empty")
    row, col = np.unravel_index(flat[rng.integers(flat.size)], region.shape)
    return int(row), int(col)
