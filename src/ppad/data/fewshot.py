"""Seeded few-shot support sets and the held-out validation normals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppad.errors import DataError, SettingsError


@dataclass(frozen=True)
class FewShotSplit:
    """``support``: the k training normals; ``validation``: disjoint held-out normals."""

    support: list[Path]
    validation: list[Path]

    def to_dict(self) -> dict:
        return {"support": [str(p) for p in self.support], "validation": [str(p) for p in self.validation]}


def check_pool_size(available: int, shots: int, validation_size: int) -> None:
    """Refuse a split the pool cannot fill in full (support and validation), naming the numbers.

    Cheap: callers run it before loading a backbone."""
    if shots < 1:
        raise SettingsError(f"--shots must be at least 1, got {shots}")
    if validation_size < 0:
        raise SettingsError(f"--val-size must be at least 0, got {validation_size}")
    needed = shots + validation_size
    if available < needed:
        asked = f"--shots {shots} + --val-size {validation_size} need" if validation_size else f"--shots {shots} needs"
        way_out = "lower --shots or --val-size" if validation_size else "lower --shots"
        raise DataError(f"{asked} {needed} normal training images; the data set has only {available}: {way_out}")


def draw_few_shot(pool: list[Path], shots: int, validation_size: int, seed: int) -> FewShotSplit:
    """Draw ``shots`` support images and ``validation_size`` others from ``pool`` (which must hold both).

    The draw depends only on the sorted pool and the seed.
    """
    ordered = sorted(pool)
    check_pool_size(len(ordered), shots, validation_size)
    order = np.random.default_rng(seed).permutation(len(ordered))
    support = [ordered[i] for i in order[:shots]]
    validation = [ordered[i] for i in order[shots : shots + validation_size]]
    return FewShotSplit(support=support, validation=validation)
