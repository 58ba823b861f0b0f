"""Score images with a trained model: five batched views per image, the paper's rule on top."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ppad.data.loading import load_images
from ppad.methods.base import PromptDetector
from ppad.scoring.rows import ScoreReport

READ_CHUNK = 256  # images read and resized at a time, bounding memory on large folders


def predict_views(
    model: PromptDetector, images: np.ndarray, batch_size: int = 32, progress: bool = False, desc: str = "scoring"
) -> np.ndarray:
    """[N, S, S] images in [0, 1] → [N, R] abnormal probability per view (text features cached).

    Under ``torch.no_grad`` rather than ``inference_mode``: features a :class:`FeatureCache` keeps
    from here are reused in training, where inference tensors may not enter autograd."""
    results = [np.zeros((0, len(model.view_names)), dtype=np.float32)]
    with model.inference(), tqdm(total=len(images), desc=desc, unit="film", disable=not progress, leave=False) as bar:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(model.device)
            results.append(model.view_probabilities(model.preprocessing.normalize(batch)).float().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(results)


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

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, S, S] resized films in [0, 1] → ([N, V] view probabilities, [N] scores)."""
        views = predict_views(self.model, images, self.batch_size)
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
