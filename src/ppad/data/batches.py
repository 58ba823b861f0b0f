"""Typed batches and the synthetic-anomaly episode that builds them."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ppad.backbones.preprocessing import Preprocessing
from ppad.synthesis.base import SynthesisTask


@dataclass
class ModelBatch:
    """A training batch as the model and its loss take it (tensors on the model's device)."""

    images: torch.Tensor  # [B, 3, S, S] normalised
    region_index: torch.Tensor  # [B] int64
    labels: torch.Tensor  # [B] float32
    anomaly_masks: torch.Tensor  # [B, S, S] float32, 1 inside the synthetic anomaly
    region_masks: torch.Tensor | None = None  # [B, R, S, S] each film's own regions (anatomical sets)


#: where a validation row comes from: a held-out normal, one with a synthetic anomaly, a real abnormal film
HELD_OUT, SYNTHETIC, REAL = "held-out normal", "synthetic anomaly", "real abnormal"


@dataclass
class SyntheticBatch:
    """Images in [0, 1] with a region per image; ``labels`` 1 where an anomaly was synthesised
    (or the film is a real abnormal one). ``region_masks``: each film's own region masks
    [B, R, S, S] (anatomical sets), else None. ``origin``: a validation batch's row origins
    (:data:`HELD_OUT`, :data:`SYNTHETIC`, :data:`REAL`); None for a training batch."""

    images: np.ndarray  # [B, S, S] float32
    region_index: np.ndarray  # [B] int64
    labels: np.ndarray  # [B] float32
    anomaly_masks: np.ndarray  # [B, S, S] bool
    region_masks: np.ndarray | None = None
    origin: np.ndarray | None = None  # [B] str

    def rows(self, keep: np.ndarray) -> SyntheticBatch:
        """The rows where ``keep`` is True."""
        values = (getattr(self, field.name) for field in fields(self))
        return SyntheticBatch(*(None if value is None else value[keep] for value in values))

    def count(self, origin: str) -> int:
        return 0 if self.origin is None else int((self.origin == origin).sum())

    def choice_rows(self) -> SyntheticBatch:
        """The rows validation's choices (epoch, calibration, fusion weight) are made on: with real
        abnormal films, the held-out normals against them alone (synthetic anomalies left out, real
        disease is what is to be detected); otherwise every row."""
        return self.rows(self.origin != SYNTHETIC) if self.count(REAL) else self

    def synthetic_rows(self) -> SyntheticBatch:
        """The held-out normals and their synthetic anomalies, without any real abnormal film."""
        return self.rows(self.origin != REAL) if self.count(REAL) else self

    def compared(self) -> str:
        """What :meth:`choice_rows` compares, in words."""
        normals = self.count(HELD_OUT) if self.origin is not None else int((self.labels == 0).sum())
        if self.count(REAL):
            return f"real abnormal validation films ({self.count(REAL)}) vs held-out normals ({normals})"
        return f"synthetic anomalies ({int(self.labels.sum())}) vs held-out normals ({normals})"

    def model_input(self, preprocessing: Preprocessing, device: torch.device) -> torch.Tensor:
        return preprocessing.normalize(torch.from_numpy(self.images).to(device))

    def model_masks(self, device: torch.device) -> torch.Tensor | None:
        """The films' own region masks as the model takes them, or None for fixed regions."""
        return None if self.region_masks is None else torch.from_numpy(self.region_masks).to(device, torch.float32)

    def to_model(self, preprocessing: Preprocessing, device: torch.device) -> ModelBatch:
        return ModelBatch(
            images=self.model_input(preprocessing, device),
            region_index=torch.from_numpy(self.region_index).to(device),
            labels=torch.from_numpy(self.labels).to(device),
            anomaly_masks=torch.from_numpy(self.anomaly_masks).to(device, torch.float32),
            region_masks=self.model_masks(device),
        )


def synthesize_batch(
    images: np.ndarray,
    region_masks: np.ndarray,
    task: SynthesisTask,
    rng: np.random.Generator,
    p_anomaly: float = 0.5,
    labels: np.ndarray | None = None,
) -> SyntheticBatch:
    """Give each image a random region; with probability ``p_anomaly`` (or where ``labels`` is 1)
    synthesise an anomaly inside that region. ``region_masks``: [R, S, S] for every film, or each
    film's own [N, R, S, S]. An image the task left unchanged (an empty mask, e.g. the identity
    task) is labelled normal."""
    count = len(images)
    per_film = region_masks.ndim == 4
    region_index = rng.integers(0, region_masks.shape[per_film], size=count)
    if labels is None:
        labels = rng.random(count) < p_anomaly
    labels = np.asarray(labels, dtype=bool)
    out = np.array(images, dtype=np.float32, copy=True)
    masks = np.zeros(out.shape, dtype=bool)
    for i in np.flatnonzero(labels):
        region = region_masks[i, region_index[i]] if per_film else region_masks[region_index[i]]
        result = task(out[i], region, rng)
        out[i], masks[i] = result.image, result.mask
    labels = masks.any(axis=(1, 2)).astype(np.float32)
    return SyntheticBatch(out, region_index.astype(np.int64), labels, masks, region_masks if per_film else None)


def validation_batch(normals: np.ndarray, region_masks: np.ndarray, task: SynthesisTask, seed: int) -> SyntheticBatch:
    """Held-out normals, each once as is and once with a synthetic anomaly (a fixed draw);
    ``region_masks`` as in :func:`synthesize_batch`."""
    labels = np.repeat([False, True], len(normals))
    rng = np.random.default_rng([seed, 0x7A1])
    if region_masks.ndim == 4:
        region_masks = np.concatenate([region_masks, region_masks])
    batch = synthesize_batch(np.concatenate([normals, normals]), region_masks, task, rng, labels=labels)
    return replace(batch, origin=np.repeat([HELD_OUT, SYNTHETIC], len(normals)))


def with_real_abnormal(batch: SyntheticBatch, films: np.ndarray, region_masks: np.ndarray) -> SyntheticBatch:
    """A validation ``batch`` followed by real abnormal ``films`` ([N, S, S] in [0, 1]): label 1,
    region 0, an empty anomaly mask (where the disease lies is not known), origin :data:`REAL`.
    ``region_masks`` as :func:`synthesize_batch` takes them (used for per-film sets only)."""
    count = len(films)
    return SyntheticBatch(
        images=np.concatenate([batch.images, films.astype(np.float32)]),
        region_index=np.concatenate([batch.region_index, np.zeros(count, np.int64)]),
        labels=np.concatenate([batch.labels, np.ones(count, np.float32)]),
        anomaly_masks=np.concatenate([batch.anomaly_masks, np.zeros(films.shape, bool)]),
        region_masks=None if batch.region_masks is None else np.concatenate([batch.region_masks, region_masks]),
        origin=np.concatenate([batch.origin, np.full(count, REAL)]),
    )
