"""A few-shot visual memory: frozen image-tower features of the k support normals.

``knn`` scores an image by the cosine distance of its features to the nearest support normal
(the kNN/PatchCore family). ``<method>+knn`` fuses a prompt method's score with the memory's,
WinCLIP+-style; the weight is chosen on the validation split only.

Distances become probabilities against the held-out validation normals: ``p = σ((d − q)/s)``
with ``q`` their 95th percentile and ``s`` their standard deviation, so p = 0.5 sits where 5 % of
held-out normals lie beyond — a threshold fixed by normals alone, whatever the synthesis. Without
two held-out normals (``--val-size 0`` or 1) the distances are the support's own, leave-one-out:
each support normal's distance to its nearest other support normal. The fusion weight leaves
:data:`FIXED_FUSION_WEIGHT` only for a validation AUC gain beyond noise (:func:`choose_fusion_weight`);
without validation anomalies it is fixed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from ppad.backbones.protocol import Backbone
from ppad.errors import SettingsError
from ppad.methods.base import DetectorConfig, PromptDetector
from ppad.methods.inference import map_batches

NORMAL_QUANTILE = 0.95
FUSION_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))  # share of the prompt score
FIXED_FUSION_WEIGHT = 0.5  # equal shares (WinCLIP+ averages its two scores) when validation cannot choose
FUSION_RESAMPLES = 200  # paired bootstrap resamples of the validation films behind the noise rule
FUSION_RULE = (
    f"the weight with the best validation AUC if it beats w = {FIXED_FUSION_WEIGHT} by more than the standard "
    f"error of that AUC difference ({FUSION_RESAMPLES} paired bootstrap resamples of the validation films, "
    f"seeded); else {FIXED_FUSION_WEIGHT}"
)


def normal_calibration(distances: np.ndarray) -> tuple[float, float]:
    """Normals' distances → ``(q, s)`` of ``p = σ((d − q)/s)``: their :data:`NORMAL_QUANTILE` and
    their standard deviation."""
    return float(np.quantile(distances, NORMAL_QUANTILE)), float(max(distances.std(), 1e-6))


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

        def memory(batch: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
            return model.backbone.memory_features(batch, model.film_pool(batch, masks))

        return torch.cat(map_batches(model, images, memory, batch_size, progress, desc))

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

    def leave_one_out_distances(self) -> torch.Tensor:
        """[k] each support feature's cosine distance to its nearest other support feature."""
        if len(self.bank) < 2:
            raise SettingsError(
                "the few-shot memory cannot be calibrated: give it two held-out normals (--val-size 2) "
                "or two support normals (--shots 2)"
            )
        similarity = self.bank @ self.bank.T
        return 1 - similarity.fill_diagonal_(-torch.inf).max(dim=1).values

    def calibrate(self, model: PromptDetector, normals: np.ndarray, batch_size: int, progress: bool = False) -> dict:
        """Fix ``q`` and ``s`` from held-out normals (never the test split), or from the support,
        leave-one-out, when fewer than two are held out; the record says which."""
        held_out = (
            self.features(model, normals, batch_size, progress, "memory: calibrating") if len(normals) >= 2 else None
        )
        return self.calibrate_on(held_out)

    def calibrate_on(self, normals: torch.Tensor | None) -> dict:
        """:meth:`calibrate` on the held-out normals' memory features (None or fewer than two: the support's)."""
        if normals is not None and len(normals) >= 2:
            d, source = self.distances(normals), f"{len(normals)} held-out validation normals"
        else:
            d = self.leave_one_out_distances()
            source = f"its {len(d)} support normals, leave-one-out (each against its nearest other support normal)"
        q, s = normal_calibration(d.cpu().numpy())
        self.calibration = torch.tensor([q, s], device=self.bank.device)
        return {"memory_q95": q, "memory_scale": s, "calibrated_on": f"memory: {source}"}


@dataclass(frozen=True)
class KnnConfig(DetectorConfig):
    """One whole-image view; no text. ``region_set="lungs"`` pools the memory over the lung fields."""

    region_set: str = "whole"


class MemoryDetector(PromptDetector):
    """A memory alone (``knn``, ``patch-knn``): no text, one view, nothing learned by gradient; the
    support's features, kept in ``memory.bank``, are the model."""

    resizable_state = ("memory.bank",)

    @property
    def reads_film_masks(self) -> bool:
        return True

    def compute_text_features(self) -> torch.Tensor:
        return torch.zeros(0, device=self.device)

    def score_views(self, views: torch.Tensor) -> torch.Tensor:
        return views[:, 0]


class KnnModel(MemoryDetector):
    """Few-shot memory alone: the support normals' pooled features are the bank."""

    def __init__(self, backbone: Backbone, config: KnnConfig = KnnConfig()) -> None:
        super().__init__(backbone, config)
        self.memory = FewShotMemory().to(self.device)

    @property
    def view_names(self) -> list[str]:
        return ["memory"]

    def view_probabilities(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        return self.memory.probability(self.backbone.memory_features(images, self.film_pool(images, masks)))[:, None]

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
        """Calibrate the memory on validation normals, then choose w by :func:`choose_fusion_weight`
        (without both classes in ``labels``: w = :data:`FIXED_FUSION_WEIGHT`)."""
        if len(np.unique(labels)) < 2:
            chosen = self.memory.calibrate(self, images[labels == 0], batch_size, progress)
            self.fusion_weight = torch.tensor(FIXED_FUSION_WEIGHT, device=self.device)
            made_on = f"{chosen['calibrated_on']}; fusion weight: fixed at {FIXED_FUSION_WEIGHT}, no validation anomalies to choose it"
            return {
                **chosen,
                "fusion_weight": FIXED_FUSION_WEIGHT,
                "fusion_chosen_on": "fixed",
                "calibrated_on": made_on,
            }
        # one pass for both: the prompt views of every film, the memory features the normals calibrate on
        batches = map_batches(
            self, images, self.views_and_memory, batch_size, progress, "memory: calibrating + fusion weight"
        )
        views, features = (torch.cat(parts) for parts in zip(*batches))
        chosen = self.memory.calibrate_on(features[torch.from_numpy(labels == 0).to(features.device)])
        memory = self.memory.probability(features).double().cpu().numpy()
        prompt = super().score_views(views.double().cpu()).numpy()
        fusion = choose_fusion_weight(labels, prompt, memory)
        self.fusion_weight = torch.tensor(fusion["fusion_weight"], device=self.device)
        made_on = f"{chosen['calibrated_on']}; fusion weight: {fusion.pop('fusion_decision')}"
        return {**chosen, **fusion, "calibrated_on": made_on}


def paired_bootstrap_aucs(labels: np.ndarray, scores: list[np.ndarray], resamples: int, seed: int = 0) -> np.ndarray:
    """[resamples, len(scores)] each score's AUC on the same resamples of the films (normals and
    abnormal films drawn with replacement apart, so every resample holds both classes)."""
    rng = np.random.default_rng(seed)
    normal, abnormal = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    normal_counts = rng.multinomial(len(normal), np.full(len(normal), 1 / len(normal)), size=resamples)
    abnormal_counts = rng.multinomial(len(abnormal), np.full(len(abnormal), 1 / len(abnormal)), size=resamples)
    aucs = []
    for score in scores:
        above = score[abnormal][None, :] - score[normal][:, None]  # [normals, abnormal films]
        wins = (above > 0) + 0.5 * (above == 0)
        pairs = np.einsum("bi,ij,bj->b", normal_counts, wins, abnormal_counts)
        aucs.append(pairs / (len(normal) * len(abnormal)))
    return np.stack(aucs, axis=1)


def choose_fusion_weight(labels: np.ndarray, prompt: np.ndarray, memory: np.ndarray) -> dict:
    """w of ``w · prompt + (1 − w) · memory`` by :data:`FUSION_RULE`: the best validation AUC over
    :data:`FUSION_WEIGHTS` moves w away from :data:`FIXED_FUSION_WEIGHT` only when its gain is
    larger than the paired bootstrap standard error of that gain — a gain within noise keeps equal shares."""
    fused = {float(w): w * prompt + (1 - w) * memory for w in FUSION_WEIGHTS}
    aucs = {w: float(roc_auc_score(labels, score)) for w, score in fused.items()}
    best = max(aucs, key=aucs.get)  # the first of equal AUCs
    fixed = FIXED_FUSION_WEIGHT
    gain = aucs[best] - aucs[fixed]
    bootstrap = paired_bootstrap_aucs(labels, [fused[best], fused[fixed]], FUSION_RESAMPLES)
    noise = float(np.std(bootstrap[:, 0] - bootstrap[:, 1], ddof=1))
    weight = best if gain > noise else fixed
    if weight != fixed:
        decision = (
            f"{best:g}: its validation AUC beats w = {fixed:g}'s by {gain:.4f}, more than that gain's "
            f"bootstrap standard error {noise:.4f}"
        )
    elif best == fixed:
        decision = f"{fixed:g}, the best validation AUC"
    else:
        decision = (
            f"{fixed:g} kept: w = {best:g} beats it by {gain:.4f} AUC, within that gain's bootstrap "
            f"standard error {noise:.4f} (noise)"
        )
    return {
        "fusion_weight": weight,
        "fusion_val_auc": aucs[weight],
        "fusion_val_aucs": {f"{w:g}": auc for w, auc in aucs.items()},
        "fusion_gain": gain,
        "fusion_gain_se": noise,
        "fusion_rule": FUSION_RULE,
        "fusion_chosen_on": f"validation anomalies ({int(labels.sum())}) vs held-out normals ({int((labels == 0).sum())})",
        "fusion_decision": decision,
    }


@cache
def with_memory(model: type[PromptDetector]) -> type[PromptDetector]:
    """The fused variant of a prompt method's model class."""
    return type(f"{model.__name__}WithMemory", (MemoryFusion, model), {"__doc__": MemoryFusion.__doc__})
