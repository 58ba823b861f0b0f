"""MediCLIP (Zhang et al., MICCAI 2024): linear adapters on frozen patch features, read against
learned class prompts pixel by pixel.

For each of three layers of the frozen image tower (:meth:`Backbone.dense_features`: a ViT's
patch tokens at three blocks, a CNN's stride-8/16/32 stage maps), a 1×1 convolution maps every
location into the joint space, unit norm; all grids are upsampled to the largest. Each location's
cosine with the two class embeddings (CoOp class-specific context over several words per class)
is a logit; the mean over layers, upsampled bilinearly to the input and softmaxed over the two
classes, is the anomaly map, and its maximum inside the film's lung fields the image's score (the
whole film where the segmenter's mask is not trusted): the same fields the lung-restricted map
keeps, so a map's maximum is the score. Only the adapters and the context learn, from synthetic
anomalies (placed inside the lung fields) and their masks (focal + Dice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from ppad.backbones.feature_cache import FeatureCache
from ppad.backbones.protocol import Backbone
from ppad.data.batches import SyntheticBatch
from ppad.errors import SettingsError
from ppad.methods.base import ABNORMAL_CLASS, DetectorConfig, PromptDetector
from ppad.methods.inference import map_batches
from ppad.prompts.text import ClassWordsTextPrompt
from ppad.regions.regions import LUNG_FIELDS, WHOLE_IMAGE

NORMAL_WORDS = (
    "normal",
    "healthy",
    "negative",
    "unremarkable",
    "clear",
    "asymptomatic",
    "normal findings",
    "no findings",
    "in good health",
    "no evidence of disease",
)
ABNORMAL_WORDS = (
    "abnormal",
    "positive",
    "symptomatic",
    "disease",
    "lesion",
    "pathological",
    "impaired",
    "evidence of disease",
    "abnormal finding",
    "pathological condition",
    "pathological abnormality",
)
PIXEL_AUC_STRIDE = 4  # validation pixel AUROC on every 4th row and column (1/16 of the pixels)


@dataclass(frozen=True)
class MediCLIPConfig(DetectorConfig):
    """``dense_layers``: which layers' local features the adapters read (empty: the backbone's
    own choice, :attr:`Backbone.dense_layers`). ``causal_text=False`` runs a causal text
    transformer without its mask, as the authors' code does (the ``reference`` preset). The region
    set is always ``lung-fields`` (runs recorded with ``whole``, before the score read the lung
    fields, load as it)."""

    region_set: str = LUNG_FIELDS.name
    n_ctx: int = 8
    normal_words: tuple[str, ...] = NORMAL_WORDS
    abnormal_words: tuple[str, ...] = ABNORMAL_WORDS
    dense_layers: tuple[int, ...] = ()
    causal_text: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediCLIPConfig:
        if data.get("region_set") == WHOLE_IMAGE.name:
            data = {**data, "region_set": LUNG_FIELDS.name}
        return super().from_dict(data)


class MediCLIPModel(PromptDetector):
    """Frozen backbone + per-layer linear adapters + class-specific text context; one view whose
    probability is the anomaly map's maximum inside the film's trusted lung fields."""

    losses = ("focal-dice",)

    def __init__(self, backbone: Backbone, config: MediCLIPConfig = MediCLIPConfig()) -> None:
        if config.region_set != LUNG_FIELDS.name:
            raise SettingsError(
                f"MediCLIP scores its map inside each film's lung fields: region set {config.region_set!r} "
                "does not apply to it (leave --region-set out)"
            )
        super().__init__(backbone, config)
        self.layers = tuple(config.dense_layers) or tuple(backbone.dense_layers)
        self.adapters = nn.ModuleList(
            nn.Conv2d(width, backbone.embed_dim, kernel_size=1) for width in backbone.dense_widths(self.layers)
        ).to(self.device)
        words = (config.normal_words, config.abnormal_words)
        self.text_prompt = ClassWordsTextPrompt(backbone, words, config.n_ctx, config.causal_text)

    @property
    def reads_film_masks(self) -> bool:
        return True  # the image score is the map's maximum inside the lung fields

    def compute_text_features(self) -> torch.Tensor:
        return self.text_prompt.text_features(self.backbone)

    # --- the map -------------------------------------------------------------------------------
    def dense_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The frozen tower's local features at :attr:`layers` (no graph unless the images carry a
        gradient, e.g. for an input-gradient map)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and images.requires_grad):
            return self.backbone.dense_features(images, self.layers)

    def map_logits(self, images: torch.Tensor, dense: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[B, 3, S, S] normalised images (or their ``dense`` features) → [B, 2, S, S] per-pixel
        class logits: mean over layers of the adapted locations' cosines with the class embeddings."""
        dense = self.dense_features(images) if dense is None else dense
        text = self.text_features()[0]  # [2, D]
        grid = max(features.shape[-1] for features in dense)
        logits = 0
        for adapter, features in zip(self.adapters, dense):
            local = adapter(features.to(adapter.weight.dtype))
            if local.shape[-1] != grid:  # MediCLIP's "Necker": every grid to the largest
                local = F.interpolate(local, size=(grid, grid), mode="bilinear", align_corners=False)
            logits = logits + torch.einsum("bdhw,cd->bchw", F.normalize(local, dim=1), text)
        size = images.shape[-2:]
        return F.interpolate(logits / len(dense), size=size, mode="bilinear", align_corners=False)

    def anomaly_map(self, images: torch.Tensor, dense: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[B, S, S] abnormal probability per pixel, at the input's size."""
        return self.map_logits(images, dense).softmax(dim=1)[:, ABNORMAL_CLASS]

    def map_score(self, amap: torch.Tensor, pool: torch.Tensor | None) -> torch.Tensor:
        """[B, S, S] maps → [B, 1] their maximum inside ``pool``'s lung fields (``None``: the whole map)."""
        if pool is not None:
            amap = torch.where(pool[:, 0] > 0.5, amap, torch.zeros_like(amap))
        return amap.flatten(1).amax(dim=1, keepdim=True)

    # --- the detector surface ------------------------------------------------------------------
    def view_probabilities(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        return self.map_score(self.anomaly_map(images), self.film_pool(images, masks))

    def views_and_memory(self, images: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        pool = self.film_pool(images, masks)
        return self.map_score(self.anomaly_map(images), pool), self.backbone.memory_features(images, pool)

    def score_views(self, views: torch.Tensor) -> torch.Tensor:
        return views[:, 0]

    @property
    def validation_features(self) -> FeatureCache:
        """The frozen tower behind a :class:`FeatureCache`: validation reads the same films every
        epoch, so their dense features are computed on the first pass only (the backbone itself
        when it is a cache already, e.g. in a bench)."""
        if "_validation_features" not in self.__dict__:  # not a submodule: checkpoints never hold it
            cache = self.backbone if isinstance(self.backbone, FeatureCache) else FeatureCache(self.backbone)
            self.__dict__["_validation_features"] = cache
        return self.__dict__["_validation_features"]

    def validation_metrics(self, validation: SyntheticBatch, batch_size: int = 32, progress: bool = False) -> dict:
        """Image AUROC (map maximum) and pixel AUROC (every :data:`PIXEL_AUC_STRIDE`-th row and column
        of every validation film) on the synthetic anomalies; their mean selects the epoch. The frozen
        tower's features of the validation films are computed once per training run
        (:attr:`validation_features`)."""

        def score_and_map(images: torch.Tensor, masks: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
            amap = self.anomaly_map(images, self.validation_features.dense_features(images, self.layers))
            score = self.map_score(amap, self.film_pool(images, masks))[:, 0]
            return score.cpu().numpy(), amap[:, ::PIXEL_AUC_STRIDE, ::PIXEL_AUC_STRIDE].cpu().numpy()

        scores, maps = zip(*map_batches(self, validation.images, score_and_map, batch_size, progress, "validating"))
        image_auc = float(roc_auc_score(validation.labels, np.concatenate(scores)))
        pixels = validation.anomaly_masks[:, ::PIXEL_AUC_STRIDE, ::PIXEL_AUC_STRIDE].ravel()
        if pixels.min() == pixels.max():
            return {"val_auc": image_auc, "val_image_auc": image_auc}
        pixel_auc = float(roc_auc_score(pixels, np.concatenate(maps).ravel()))
        return {"val_auc": (image_auc + pixel_auc) / 2, "val_image_auc": image_auc, "val_pixel_auc": pixel_auc}
