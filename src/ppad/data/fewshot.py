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


def draw_few_shot(pool: list[Path], shots: int, validation_size: int, seed: int) -> FewShotSplit:
    """Draw ``shots`` support images and up to ``validation_size`` others from ``pool``.

    The draw depends only on the sorted pool and the seed.
    """
    ordered = sorted(pool)
    if shots < 1:
        raise SettingsError("shots must be at least 1")
    if len(ordered) < shots:
        raise DataError(f"asked for {shots} shots but the data set has only {len(ordered)} normal training images")
    order = np.random.default_rng(seed).permutation(len(ordered))
    support = [ordered[i] for i in order[:shots]]
    validation = [ordered[i] for i in order[shots : shots + validation_size]]
    return FewShotSplit(support=support, validation=validation)
