"""What every detection method shares: a frozen backbone, views (regions), two class prompts.

A method supplies text features per view and class, and (optionally) its own way of turning
input embeddings into image features. Scoring, training and checkpoints work on this surface;
methods that hold a few-shot memory add a column to the views and their own aggregation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from ppad.backbones.preprocessing import Preprocessing
from ppad.backbones.protocol import Backbone
from ppad.data.batches import SyntheticBatch
from ppad.errors import SettingsError
from ppad.lungs.frames import shipped_frame_lung_fields
from ppad.methods.inference import predict_views
from ppad.regions import get_region_set
from ppad.regions.anatomy import film_region_masks

ABNORMAL_CLASS = 1  # classes are (normal word, abnormal word)


@dataclass(frozen=True)
class DetectorConfig:
    """Settings every method has; subclasses add their own, all saved next to the prompts.

    ``region_set``: ``"ppad"`` (image halves), ``"lungs"`` (each film's own lung fields from the
    shipped segmenter, the halves where its mask is not trusted) or ``"whole"``.
    ``region_sides``: ``"anatomical"`` (patient's left = image right) or ``"image"`` (mirrored,
    the authors' code). ``patch_rule``: when a ViT patch is inside a region, ``"majority"`` (at
    least half its pixels) or ``"any"`` (any pixel, the authors' code); CNN towers mask pixels
    exactly, so the rule does not apply to them.
    """

    classes: tuple[str, str] = ("normal", "pneumonia")
    region_set: str = "ppad"
    region_sides: str = "anatomical"
    patch_rule: str = "majority"
    image_size: int = 224
    resize_mode: str = "pad"
    eta: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


class PromptDetector(nn.Module):
    """Scores images at every view of its region set with a frozen backbone."""

    #: State entries whose size depends on the data (a memory bank), resized on load.
    resizable_state: tuple[str, ...] = ()
    #: The training losses (:data:`ppad.training.losses.LOSSES` names) this method learns from.
    losses: tuple[str, ...] = ("softmax-bce", "two-sigmoid")
    #: The files its run trained or validated on (resolved), set by ``RunFolder.load_model``; None:
    #: not known. :func:`ppad.scoring.evaluate` leaves them out of the test split.
    trained_on: set[Path] | None = None

    def __init__(self, backbone: Backbone, config: DetectorConfig) -> None:
        super().__init__()
        if len(config.classes) != 2:
            raise SettingsError("a detector takes exactly two class words: (normal, abnormal)")
        self.config = config
        self.backbone = backbone
        self.regions = get_region_set(config.region_set, config.region_sides, config.patch_rule)
        base = backbone.architecture.preprocessing
        self.preprocessing = Preprocessing(
            image_size=config.image_size, resize_mode=config.resize_mode, mean=base.mean, std=base.std
        )
        self.prompt_shape = backbone.prompt_shape(config.image_size)  # also checks the size fits the tower
        fixed = torch.from_numpy(self.regions.pixel_masks(config.image_size))
        self.register_buffer("region_keep", backbone.keep_of_masks(fixed, self.regions.patch_rule), persistent=False)
        unmasked = self.region_keep.flatten(1).min(dim=1).values >= 1  # the whole view, on every film
        self.register_buffer("unmasked_views", unmasked.float(), persistent=False)
        #: each film's lung fields, for an anatomical region set (None: fixed rectangles)
        self.film_lungs = shipped_frame_lung_fields() if self.regions.per_film else None
        self._text_cache: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.region_keep.device

    @property
    def view_names(self) -> list[str]:
        """One name per column of :meth:`view_probabilities`."""
        return self.regions.names

    @property
    def plain_views(self) -> frozenset[int]:
        """Views whose image features are the frozen tower's on the unprompted image (default: all)."""
        return frozenset(range(len(self.regions)))

    @property
    def reads_film_masks(self) -> bool:
        """Whether scoring needs each film's region masks (an image prompt or a pooled memory reads
        them); text-only methods use them only to place synthetic anomalies in training."""
        return False

    @property
    def scores_on_film_lungs(self) -> bool:
        """Whether its scores read each film's lung fields (an anatomical region set read by an image
        prompt or a pooled memory): scoring then segments every film, and an export takes the masks."""
        return self.film_lungs is not None and self.reads_film_masks

    # --- per-film regions (anatomical region sets) -----------------------------------------
    def region_masks(self, images: np.ndarray) -> np.ndarray:
        """Where each region lies, for synthesis: ``[N, R, S, S]`` per film for an anatomical set (the
        whole view's anomalies go inside both lung fields), else the fixed ``[R, S, S]`` rectangles."""
        if self.film_lungs is None:
            return self.regions.pixel_masks(images.shape[-1])
        return film_region_masks(self.regions, self.film_lungs(images))

    def film_masks(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor | None:
        """``[B, R, S, S]`` float region masks of normalised ``images`` (``masks`` when given, else
        segmented), or None when the regions are fixed or nothing reads them."""
        if masks is not None or not self.scores_on_film_lungs:
            return masks
        films = self.preprocessing.denormalize(images).detach().float().cpu().numpy()
        return torch.from_numpy(self.region_masks(films)).to(images.device, torch.float32)

    def film_keep(self, masks: torch.Tensor | None) -> torch.Tensor | None:
        """Per-film region masks → ``[B, R, …]`` keep masks in the input embedding's layout (views
        that mask nothing stay whole); None for fixed regions."""
        if masks is None:
            return None
        keep = self.backbone.keep_of_masks(masks, self.regions.patch_rule)
        return torch.maximum(keep, self.unmasked_views.reshape(1, -1, *[1] * (keep.ndim - 2)))

    def film_pool(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor | None:
        """:meth:`memory_pool` of :meth:`film_masks`: the lung fields normalised ``images`` pool over."""
        return self.memory_pool(self.film_masks(images, masks))

    def memory_pool(self, masks: torch.Tensor | None) -> torch.Tensor | None:
        """``[B, 1, S, S]`` weights the memory pools over: both lung fields (the whole view's
        placement mask) for an anatomical set; None (the whole map) otherwise."""
        if masks is None:
            return None
        whole = next(i for i, region in enumerate(self.regions.regions) if region.anatomy == "whole")
        return masks[:, whole : whole + 1]

    # --- what a method provides ------------------------------------------------------------
    def compute_text_features(self) -> torch.Tensor:
        """[R, 2, D] unit-norm text features, one pair per view."""
        raise NotImplementedError

    def image_features(
        self, embeddings: torch.Tensor, region_index: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, …] input embeddings, [B] view indices (and each film's keep mask at that view, for
        per-film regions) → [B, D] image features (default: plain tower)."""
        return self.backbone.encode_input_embeddings(embeddings)

    def prepare(self, support: np.ndarray, batch_size: int = 32, progress: bool = False) -> None:
        """Called with the support normals ([k, S, S] in [0, 1]) before training; default: nothing."""

    def calibrate(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 32, progress: bool = False) -> dict:
        """Called with the validation split after training; returns what it set (default: nothing)."""
        return {}

    def validation_metrics(self, validation: SyntheticBatch, batch_size: int = 32, progress: bool = False) -> dict:
        """Numbers on the validation split (held-out normals + synthetic anomalies); ``val_auc`` is
        what selects the epoch (default: image AUROC of the final score)."""
        views = predict_views(self, validation.images, batch_size, progress, "validating")
        return {"val_auc": float(roc_auc_score(validation.labels, self.aggregate(views)))}

    def aggregate(self, views: np.ndarray) -> np.ndarray:
        """[N, V] view probabilities → [N] final scores, in float64 (:meth:`score_views`)."""
        views = np.asarray(views, dtype=np.float64)
        if views.ndim != 2 or views.shape[1] != len(self.view_names):
            raise ValueError(f"expected [images, {len(self.view_names)} views] probabilities, got {views.shape}")
        return self.score_views(torch.from_numpy(views)).numpy()

    # --- shared machinery -----------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def prompt_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: learned prompts and fitted state, never the backbone."""
        return {k: v.detach() for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors gradient descent changes (what training state and warm starts carry)."""
        return {name: param.detach() for name, param in self.named_parameters() if param.requires_grad}

    def load_learned_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._load_checked(state, self.learned_state_dict())

    def load_prompt_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._load_checked(state, self.prompt_state_dict())

    def _load_checked(self, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
        if set(state) != set(expected):
            raise ValueError(f"prompt tensors {sorted(state)} do not match the model's {sorted(expected)}")
        for name, value in state.items():
            if name in self.resizable_state:
                self.get_buffer(name).resize_(value.shape)
            elif value.shape != expected[name].shape:
                raise ValueError(
                    f"prompt tensor {name} has shape {tuple(value.shape)}, expected {tuple(expected[name].shape)}"
                )
        self.load_state_dict(state, strict=False)

    def text_features(self) -> torch.Tensor:
        return self._text_cache if self._text_cache is not None else self.compute_text_features()

    @contextmanager
    def inference(self) -> Iterator[PromptDetector]:
        """No gradients, and text features computed once for every batch inside the block."""
        with torch.no_grad():
            self._text_cache = self.compute_text_features()
            try:
                yield self
            finally:
                self._text_cache = None

    def _logits(self, features: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        features = F.normalize(features, dim=-1)
        text = self.text_features()[region_index]  # [B, 2, D]
        return self.backbone.logit_scale * torch.einsum("bd,bcd->bc", features, text)

    def class_logits(
        self, images: torch.Tensor, region_index: torch.Tensor, masks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, 3, H, W] normalised images, [B] view indices (``masks``: [B, R, S, S] per-film region
        masks, segmented when needed and not given) → [B, 2] scaled cosine logits."""
        keep = self.film_keep(self.film_masks(images, masks))
        if keep is not None:
            keep = keep[torch.arange(len(images), device=keep.device), region_index]
        features = self.image_features(self.backbone.input_embeddings(images), region_index, keep)
        return self._logits(features, region_index)

    def forward(
        self, images: torch.Tensor, region_index: torch.Tensor, masks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Abnormal-vs-normal log-odds [B]: ``sigmoid`` of it is the abnormal softmax probability."""
        logits = self.class_logits(images, region_index, masks)
        return logits[:, ABNORMAL_CLASS] - logits[:, 1 - ABNORMAL_CLASS]

    def prompted_view_features(
        self, embeddings: torch.Tensor, views: list[int], keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, …] input embeddings (``keep``: [B, R, …] per-film keep masks) → [len(views)·B, D] image
        features at ``views`` (not plain), view-major."""
        index = torch.arange(len(embeddings), device=embeddings.device)
        return torch.cat(
            [
                self.image_features(embeddings, torch.full_like(index, v), None if keep is None else keep[:, v])
                for v in views
            ]
        )

    def view_features(
        self, images: torch.Tensor, plain: torch.Tensor | None = None, masks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, 3, H, W] normalised images → [B, R, D] image features at every view.

        The tower runs once on the unprompted images for all :attr:`plain_views` (or not at all
        when ``plain``, their features, is given) and once on every other view's input, stacked
        into one batch. Views are a Python loop over a fixed count, so the graph is static
        (exportable to ONNX). ``masks``: per-film region masks (segmented when needed and not given).
        """
        embeddings = self.backbone.input_embeddings(images)
        if plain is None and self.plain_views:
            plain = self.backbone.encode_input_embeddings(embeddings)
        prompted = [view for view in range(len(self.regions)) if view not in self.plain_views]
        if prompted:
            keep = self.film_keep(self.film_masks(images, masks))
            encoded = self.prompted_view_features(embeddings, prompted, keep).unflatten(0, (len(prompted), -1))
        columns = [
            plain if view in self.plain_views else encoded[prompted.index(view)] for view in range(len(self.regions))
        ]
        return torch.stack(columns, dim=1)

    def view_probabilities(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """[B, R] abnormal probability of every image at every view (``masks``: per-film region masks)."""
        return self.probabilities_of(self.view_features(images, masks=masks))

    def views_and_memory(self, images: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, R] view probabilities, [B, F] memory features) for a memory-fused variant: the
        unprompted image goes through the tower once for both (the plain views' features and the
        memory's descriptor). ``masks``: per-film region masks (segmented when needed and not given)."""
        masks = self.film_masks(images, masks)
        plain, memory = self.backbone.encode_image_and_memory(images, self.memory_pool(masks))
        return self.probabilities_of(self.view_features(images, plain, masks)), memory

    def probabilities_of(self, features: torch.Tensor) -> torch.Tensor:
        """[B, R, D] image features at every view → [B, R] abnormal probabilities."""
        features = F.normalize(features, dim=-1)
        logits = self.backbone.logit_scale * torch.einsum("brd,rcd->brc", features, self.text_features())
        return logits.softmax(dim=-1)[..., ABNORMAL_CLASS]

    def score_views(self, views: torch.Tensor) -> torch.Tensor:
        """[N, V] view probabilities → [N] final scores (PPAD's η rule); in torch, so it exports."""
        from ppad.scoring.rule import eta_rule  # scoring imports methods

        return eta_rule(views, self.config.eta)
