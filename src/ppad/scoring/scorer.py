"""Score images with a trained model: five batched views per image, the paper's rule on top."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ppad.data.loading import load_images
from ppad.methods.base import PromptDetector
from ppad.methods.inference import predict_views
from ppad.scoring.rows import ScoreReport, lung_field_status

READ_CHUNK = 256  # images read and resized at a time, bounding memory on large folders


def fusion_weight_of(model: PromptDetector) -> float | None:
    """``w`` of a ``<method>+knn`` model's fused score (the prompt part's share, to 6 decimals: it is
    stored in float32); ``None`` if not fused."""
    weight = getattr(model, "fusion_weight", None)
    return None if weight is None else round(float(weight), 6)


class DetectorScorer:
    """A trained model behind the scorer surface the archive streams through (ONNX has its own)."""

    def __init__(self, model: PromptDetector, batch_size: int = 32) -> None:
        self.model, self.batch_size = model, batch_size
        self.view_names, self.eta, self.preprocessing = model.view_names, model.config.eta, model.preprocessing
        self.fusion_weight = fusion_weight_of(model)
        #: each film's lung_field_status from the last :meth:`score`; None when scores use no lung fields
        self.lung_fields: list[str] | None = [] if model.scores_on_film_lungs else None

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, S, S] resized films in [0, 1] → ([N, V] view probabilities, [N] scores).

        A model on lung fields scores on those of the films as given (each segmented once per
        process), as the exported graph does, and keeps their status in :attr:`lung_fields`."""
        lungs = None if self.lung_fields is None else self.model.film_lungs(images)
        views = predict_views(self.model, images, self.batch_size, lungs=lungs)
        if lungs is not None:
            self.lung_fields = [lung_field_status(fields, self.model.regions.fallback) for fields in lungs]
        return views, self.model.aggregate(views)


def score_files(model: PromptDetector, paths: list[Path], batch_size: int = 32, progress: bool = True) -> ScoreReport:
    """Score files in order; unreadable ones are collected in ``failures`` and skipped."""
    kept, probabilities, failures = [], [np.zeros((0, len(model.view_names)), dtype=np.float32)], []
    chunks = range(0, len(paths), READ_CHUNK)
    for start in tqdm(chunks, desc="scoring", unit="chunk", disable=not progress or len(chunks) < 2):
        loaded = load_images(paths[start : start + READ_CHUNK], model.preprocessing, progress=progress)
        kept.extend(loaded.paths)
        failures.extend(loaded.failures)
        probabilities.append(predict_views(model, loaded.images, batch_size, progress, "films"))
    views = np.concatenate(probabilities)
    return ScoreReport(
        paths=kept,
        view_names=model.view_names,
        view_probabilities=views,
        scores=model.aggregate(views),
        eta=model.config.eta,
        failures=failures,
        fusion_weight=fusion_weight_of(model),
    )
