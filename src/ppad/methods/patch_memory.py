"""A patch memory inside the lung fields (PatchCore-style few-shot detection).

``patch-knn`` keeps the frozen tower's *local* features of the support normals: at every location
of the finest chosen grid, the features of several layers (a CNN's stage maps, a ViT's patch
tokens), each averaged over a ``window`` × ``window`` neighbourhood (PatchCore's local
aggregation), upsampled to that grid, unit-normalised per layer and concatenated. Only the
locations inside each support film's lung fields enter the bank (all of them for
``region_set="whole"`` or ``"ppad"``); a greedy k-centre coreset keeps :attr:`PatchKnnConfig.bank_size`
of them.

A test film's patch score is the cosine distance of each location to its nearest bank patch; its
film score is the mean of its ``top_k`` highest in-lung patch scores (``top_k=1``: the maximum),
calibrated to a probability on validation normals as ``knn`` is (:func:`normal_calibration`). Its
map *is* the patch scores. Every step is a matmul, a top-k or a pooling, so the graph exports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ppad.backbones.protocol import Backbone
from ppad.errors import SettingsError
from ppad.methods.base import DetectorConfig
from ppad.methods.inference import map_batches
from ppad.methods.memory import MemoryDetector, normal_calibration

SEARCH_CHUNK = 8192  # bank patches compared at once: bounds the [patches, bank] similarity block
CORESET_DIMS = 128  # the coreset's distances are taken in a random projection this wide


@dataclass(frozen=True)
class PatchKnnConfig(DetectorConfig):
    """``layers``: which layers' local features (empty: the first two of the backbone's
    :attr:`~ppad.backbones.protocol.Backbone.dense_layers`, PatchCore's mid-level pair: a CNN's
    stride-8 and 16 stages, a ViT's patch tokens at half and three quarters of its depth);
    ``window``: local aggregation; ``bank_size``: patches the coreset keeps; ``top_k``: in-lung
    patch scores averaged into the film score.

    ``region_set``: ``"lungs"`` keeps each film's locations inside its lung fields (every location
    where the segmenter's mask is not trusted); ``"whole"`` keeps every location, and so does
    ``"ppad"``: its image halves are fixed rectangles, not a mask of the film, so the patch memory
    pools over the whole film (the halves only place the validation's synthetic anomalies)."""

    region_set: str = "lungs"
    layers: tuple[int, ...] = ()
    window: int = 1
    bank_size: int = 4096
    top_k: int = 50

    def __post_init__(self) -> None:
        if self.window < 1 or self.window % 2 == 0:
            raise SettingsError(f"the patch memory's window must be an odd number ≥ 1, got {self.window}")
        if self.bank_size < 1 or self.top_k < 1:
            raise SettingsError("the patch memory needs bank_size ≥ 1 and top_k ≥ 1")


def local_patch_features(
    backbone: Backbone, images: torch.Tensor, layers: tuple[int, ...], window: int
) -> torch.Tensor:
    """[B, 3, H, W] normalised images → [B, C, h, w] unit-norm local features on the finest grid of
    ``layers`` (:func:`aggregate_locally` of the backbone's dense features)."""
    return aggregate_locally(backbone.dense_features(images, layers), window)


def aggregate_locally(maps: list[torch.Tensor], window: int) -> torch.Tensor:
    """[B, C_i, h_i, w_i] feature maps → [B, ΣC_i, h, w] on the finest grid: each averaged over a
    ``window`` neighbourhood, upsampled, unit norm per map, concatenated, unit norm."""
    size = max((m.shape[-2:] for m in maps), key=lambda shape: shape[0])
    parts = []
    for feature_map in maps:
        if window > 1:
            feature_map = F.avg_pool2d(feature_map, window, stride=1, padding=window // 2, count_include_pad=False)
        if feature_map.shape[-2:] != size:
            feature_map = F.interpolate(feature_map, size=size, mode="bilinear", align_corners=False)
        parts.append(F.normalize(feature_map.float(), dim=1))
    return F.normalize(torch.cat(parts, dim=1), dim=1)


def inside_patches(pool: torch.Tensor | None, size: tuple[int, int], count: int) -> torch.Tensor:
    """[B, 1, S, S] region weights (None: everywhere) → [B, h·w] bool: locations at least half inside.
    A film with no location inside keeps them all."""
    if pool is None:
        return torch.ones(count, size[0] * size[1], dtype=torch.bool)
    inside = F.adaptive_avg_pool2d(pool.float(), size).flatten(1) >= 0.5
    return inside | ~inside.any(dim=1, keepdim=True)


def greedy_coreset(features: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``size`` rows of ``features`` [N, C] chosen by greedy k-centre (each next row the
    farthest from those chosen; the first drawn with ``seed``); all rows when N ≤ size. Distances are
    taken after a seeded Gaussian projection to :data:`CORESET_DIMS` dimensions when C is larger
    (Johnson–Lindenstrauss: PatchCore's speed-up, which keeps distances within a small factor)."""
    count = len(features)
    if count <= size:
        return torch.arange(count, device=features.device)
    generator = torch.Generator().manual_seed(seed)
    if features.shape[1] > CORESET_DIMS:
        projection = torch.randn(features.shape[1], CORESET_DIMS, generator=generator) / CORESET_DIMS**0.5
        features = features @ projection.to(features)
    squared = (features * features).sum(dim=1)
    chosen = torch.empty(size, dtype=torch.long, device=features.device)
    chosen[0] = int(torch.randint(count, (1,), generator=generator))
    nearest = torch.full((count,), torch.inf, device=features.device)
    for step in range(size):
        if step:
            chosen[step] = torch.argmax(nearest)
        centre = features[chosen[step]]
        torch.minimum(nearest, squared - 2 * (features @ centre) + squared[chosen[step]], out=nearest)
    return chosen


def nearest_distances(patches: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """[…, C] unit-norm patches → […] cosine distance to the nearest of ``bank`` [M, C] (chunked)."""
    best = torch.stack([(patches @ part.T).amax(dim=-1) for part in bank.split(SEARCH_CHUNK)]).amax(dim=0)
    return 1 - best


def top_k_mean(scores: torch.Tensor, inside: torch.Tensor, k: int) -> torch.Tensor:
    """[B, P] patch scores, [B, P] bool → [B] mean of each film's ``k`` highest scores inside
    (fewer when fewer lie inside). Scores are distances (≥ 0), so −1 marks a location outside."""
    k = min(k, scores.shape[1])
    top = scores.masked_fill(~inside, -1.0).topk(k, dim=1).values
    taken = (torch.arange(k, device=scores.device)[None, :] < inside.sum(dim=1, keepdim=True)).to(top)
    return (top * taken).sum(dim=1) / taken.sum(dim=1)


class PatchMemory(nn.Module):
    """The bank of support patches and the film score → probability calibration."""

    def __init__(self, config: PatchKnnConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("bank", torch.zeros(0, 0))
        self.register_buffer("calibration", torch.tensor([0.0, 1.0]))  # (q, s)
        #: each support film's score against the other films' bank patches (set by :meth:`fill`)
        self.leave_one_out = torch.zeros(0)

    def distances(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] local features → [B, h, w] each location's distance to its nearest bank patch."""
        if not self.bank.numel():
            raise ValueError("the patch memory is empty: train the run (it stores the support patches)")
        return nearest_distances(patches.flatten(2).transpose(1, 2), self.bank).unflatten(1, patches.shape[-2:])

    def film_scores(self, patches: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] local features, [B, h·w] inside → [B] film scores (uncalibrated)."""
        distances = self.distances(patches).flatten(1)
        return top_k_mean(distances, inside.to(distances.device), self.config.top_k)

    def probability(self, scores: torch.Tensor) -> torch.Tensor:
        q, s = self.calibration
        return torch.sigmoid((scores - q) / s)

    def fill(self, patches: list[torch.Tensor], seed: int = 0) -> dict:
        """Support films' in-region patches ([n_i, C] each) → the coreset bank; also each film's
        leave-one-out score (against the bank patches of the other films), for calibration without
        held-out normals."""
        if not patches:
            raise ValueError("the patch memory needs at least one support image")
        every = torch.cat(patches)
        films = torch.cat([torch.full((len(p),), i, device=every.device) for i, p in enumerate(patches)])
        kept = greedy_coreset(every, self.config.bank_size, seed)
        self.bank, bank_films = every[kept], films[kept]
        if len(patches) >= 2:
            self.leave_one_out = torch.stack(
                [self._score_against(p, self.bank[bank_films != i]) for i, p in enumerate(patches)]
            )
        return {"support_patches": len(every), "bank_patches": len(self.bank)}

    def _score_against(self, patches: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        distances = nearest_distances(patches, bank) if len(bank) else patches.new_ones(len(patches))
        inside = torch.ones(1, len(patches), dtype=torch.bool, device=distances.device)
        return top_k_mean(distances[None], inside, self.config.top_k)[0]

    def calibrate_on(self, normal_scores: torch.Tensor | None) -> dict:
        """Fix ``q`` and ``s`` from held-out normals' film scores, or the support's leave-one-out ones."""
        if normal_scores is not None and len(normal_scores) >= 2:
            scores, source = normal_scores, f"{len(normal_scores)} held-out validation normals"
        elif len(self.leave_one_out) >= 2:
            scores = self.leave_one_out
            source = f"its {len(scores)} support normals, leave-one-out (each against the other films' patches)"
        else:
            raise SettingsError(
                "the patch memory cannot be calibrated: give it two held-out normals (--val-size 2) "
                "or two support normals (--shots 2)"
            )
        q, s = normal_calibration(scores.cpu().numpy())
        self.calibration = torch.tensor([q, s], device=self.bank.device)
        return {"memory_q95": q, "memory_scale": s, "calibrated_on": f"patch memory: {source}"}


class PatchKnnModel(MemoryDetector):
    """A patch memory alone: nothing learned, the support films' in-lung patches are the model."""

    def __init__(self, backbone: Backbone, config: PatchKnnConfig = PatchKnnConfig()) -> None:
        super().__init__(backbone, config)
        self.layers = tuple(config.layers) or tuple(backbone.dense_layers[:2])
        backbone.dense_widths(self.layers)  # checks the layers exist
        self.memory = PatchMemory(config).to(self.device)
        self.bank_record: dict = {}  # patches seen and kept, set by :meth:`prepare`

    @property
    def view_names(self) -> list[str]:
        return ["patch memory"]

    def patches_and_inside(
        self, images: torch.Tensor, masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images → ([B, C, h, w] local features, [B, h·w] locations inside the lung fields)."""
        patches = local_patch_features(self.backbone, images, self.layers, self.config.window)
        inside = inside_patches(self.film_pool(images, masks), patches.shape[-2:], len(images))
        return patches, inside.to(patches.device)

    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """[B, h, w] each location's distance to its nearest support patch (the map; every location,
        the lung fields are applied by :mod:`ppad.maps`)."""
        return self.memory.distances(local_patch_features(self.backbone, images, self.layers, self.config.window))

    def film_scores(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        return self.memory.film_scores(*self.patches_and_inside(images, masks))

    def view_probabilities(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        return self.memory.probability(self.film_scores(images, masks))[:, None]

    def prepare(self, support: np.ndarray, batch_size: int = 32, progress: bool = False) -> None:
        def inside_patches_of(batch: torch.Tensor, masks: torch.Tensor | None) -> list[torch.Tensor]:
            patches, inside = self.patches_and_inside(batch, masks)
            rows = patches.flatten(2).transpose(1, 2)
            return [film[keep] for film, keep in zip(rows, inside)]

        batches = map_batches(self, support, inside_patches_of, batch_size, progress, "patch memory: support normals")
        self.bank_record = self.memory.fill([film for batch in batches for film in batch])

    def calibrate(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 32, progress: bool = False) -> dict:
        normals = images[labels == 0]
        scores = None
        if len(normals) >= 2:
            batches = map_batches(self, normals, self.film_scores, batch_size, progress, "patch memory: calibrating")
            scores = torch.cat(batches)
        return {**self.memory.calibrate_on(scores), **self.bank_record}
