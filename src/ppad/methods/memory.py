"""A few-shot visual memory: frozen image-tower features of the k support normals.

``knn`` scores an image by the cosine distance of its features to the nearest support normal
(the kNN/PatchCore family). ``<method>+knn`` fuses a prompt method's score with the memory's,
WinCLIP+-style; the weight is chosen on the validation split only.

Distances become probabilities against the held-out validation normals: ``p = σ((d − q)/s)``
with ``q`` their 95th percentile and ``s`` their standard deviation, so p = 0.5 sits where 5 % of
held-out normals lie beyond — a threshold fixed by normals alone, whatever the synthesis.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from ppad.backbones.protocol import Backbone
from ppad.methods.base import DetectorConfig, PromptDetector

NORMAL_QUANTILE = 0.95
FUSION_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))  # share of the prompt score


class FewShotMemory(nn.Module):
    """A bank of unit-norm support features and the distance → probability calibration."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", torch.zeros(0, 0))
        self.register_buffer("calibration", torch.tensor([0.0, 1.0]))  # (q, s)

    def features(
        self, model: PromptDetector, images: np.ndarray, batch_size: int, progress: bool = False, desc: str = ""
    ) -> torch.Tensor:
        """[N, S, S] images in [0, 1] → [N, F] frozen memory features (pooled over the lung fields
        for an anatomical region set)."""
        features = []
        with torch.no_grad(), tqdm(total=len(images), desc=desc, unit="film", disable=not progress, leave=False) as bar:
            for chunk in np.array_split(images, max(1, -(-len(images) // batch_size))):
                normalized = model.preprocessing.normalize(torch.from_numpy(chunk).to(model.device))
                pool = model.memory_pool(model.film_masks(normalized))
                features.append(model.backbone.memory_features(normalized, pool))
                bar.update(len(chunk))
        return torch.cat(features)

    def fill(self, model: PromptDetector, support: np.ndarray, batch_size: int, progress: bool = False) -> None:
        if not len(support):
            raise ValueError("the few-shot memory needs at least one support image")
        self.bank = self.features(model, support, batch_size, progress, "memory: support normals")

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """[B, F] unit-norm features → [B] cosine distance to the nearest support normal."""
        if not self.bank.numel():
            raise ValueError("the few-shot memory is empty: train the run (it stores the support features)")
        return 1 - (features @ self.bank.T).max(dim=1).values

    def probability(self, features: torch.Tensor) -> torch.Tensor:
        q, s = self.calibration
        return torch.sigmoid((self.distances(features) - q) / s)

    def calibrate(self, model: PromptDetector, normals: np.ndarray, batch_size: int, progress: bool = False) -> dict:
        """Fix ``q`` and ``s`` from held-out normals (never the test split)."""
        if len(normals) < 2:
            return {}
        d = self.distances(self.features(model, normals, batch_size, progress, "memory: calibrating")).cpu().numpy()
        q, s = float(np.quantile(d, NORMAL_QUANTILE)), float(max(d.std(), 1e-6))
        self.calibration = torch.tensor([q, s], device=self.bank.device)
        return {"memory_q95": q, "memory_scale": s}


@dataclass(frozen=True)
class KnnConfig(DetectorConfig):
    """One whole-image view; no text. ``region_set="lungs"`` pools the memory over the lung fields."""

    region_set: str = "whole"


class KnnModel(PromptDetector):
    """Few-shot memory alone: nothing learned, the support features are the model."""

    resizable_state = ("memory.bank",)

    def __init__(self, backbone: Backbone, config: KnnConfig = KnnConfig()) -> None:
        super().__init__(backbone, config)
        self.memory = FewShotMemory().to(self.device)

    @property
    def view_names(self) -> list[str]:
        return ["memory"]

    @property
    def reads_film_masks(self) -> bool:
        return True

    def compute_text_features(self) -> torch.Tensor:
        return torch.zeros(0, device=self.device)

    def view_probabilities(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        pool = self.memory_pool(self.film_masks(images, masks))
        return self.memory.probability(self.backbone.memory_features(images, pool))[:, None]

    def score_views(self, views: torch.Tensor) -> torch.Tensor:
        return views[:, 0]

    def prepare(self, support: np.ndarray, batch_size: int = 32, progress: bool = False) -> None:
        self.memory.fill(self, support, batch_size, progress)

    def calibrate(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 32, progress: bool = False) -> dict:
        return self.memory.calibrate(self, images[labels == 0], batch_size, progress)


class MemoryFusion:
    """Mixin: a prompt method's views plus a ``memory`` column; score = w·prompt + (1 − w)·memory."""

    resizable_state = ("memory.bank",)

    def __init__(self, backbone: Backbone, config: DetectorConfig) -> None:
        super().__init__(backbone, config)
        self.memory = FewShotMemory().to(self.device)
        self.register_buffer("fusion_weight", torch.tensor(1.0, device=self.device))

    @property
    def view_names(self) -> list[str]:
        return [*super().view_names, "memory"]

    @property
    def reads_film_masks(self) -> bool:
        return True

    def view_probabilities(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """The prompt method's views, then the memory's (:meth:`PromptDetector.views_and_memory`)."""
        prompt_views, memory = self.views_and_memory(images, masks)
        return torch.cat([prompt_views, self.memory.probability(memory)[:, None]], dim=1)

    def score_views(self, views: torch.Tensor) -> torch.Tensor:
        weight = self.fusion_weight.to(views)
        return weight * super().score_views(views[:, :-1]) + (1 - weight) * views[:, -1]

    def prepare(self, support: np.ndarray, batch_size: int = 32, progress: bool = False) -> None:
        self.memory.fill(self, support, batch_size, progress)

    def calibrate(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 32, progress: bool = False) -> dict:
        """Calibrate the memory on validation normals, then pick w by validation AUC."""
        from ppad.scoring.scorer import predict_views  # scoring imports methods

        chosen = self.memory.calibrate(self, images[labels == 0], batch_size, progress)
        if labels.min() == labels.max():
            return chosen
        views = np.asarray(predict_views(self, images, batch_size, progress, "fusion weight"), dtype=np.float64)
        prompt, memory = super().score_views(torch.from_numpy(views[:, :-1])).numpy(), views[:, -1]
        aucs = [roc_auc_score(labels, w * prompt + (1 - w) * memory) for w in FUSION_WEIGHTS]
        best = int(np.argmax(aucs))
        self.fusion_weight = torch.tensor(float(FUSION_WEIGHTS[best]), device=self.device)
        return {**chosen, "fusion_weight": float(FUSION_WEIGHTS[best]), "fusion_val_auc": float(aucs[best])}


@cache
def with_memory(model: type[PromptDetector]) -> type[PromptDetector]:
    """The fused variant of a prompt method's model class."""
    return type(f"{model.__name__}WithMemory", (MemoryFusion, model), {"__doc__": MemoryFusion.__doc__})
