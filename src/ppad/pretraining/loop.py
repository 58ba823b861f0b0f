"""The pre-training loop: epochs over the cached outputs, one validation each, resumable.

Every process draws the same epoch plan from the same seed (the studies, their two films, views
and text pair), cuts each global batch into equal consecutive slices, one per process, and
trains on its slice; the losses see the whole global batch through a gather of the features with
their gradients, and DDP averages the gradients, so a step is the one-process step on the same
global batch. The last batch of an epoch is trimmed to a multiple of the process count.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ppad.errors import SettingsError
from ppad.io import atomic_write
from ppad.pretraining.data import Cache, PretrainSettings, with_tail
from ppad.pretraining.distributed import Ranks, barrier, data_parallel, gather_with_grad, maybe_no_sync
from ppad.pretraining.losses import cxr_clip_loss
from ppad.pretraining.selection import validation_aucs

log = logging.getLogger("ppad")


STATE_FILE = "pretrain_state.pt"


def epoch_order(sources: np.ndarray, weights: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """One epoch's draws of items (studies) from their tables: ``round(weight × n)`` from each table
    of n (each item once before any repeats), shuffled together."""
    picks = []
    for index, weight in enumerate(weights):
        items = np.flatnonzero(sources == index)
        count = round(weight * len(items))
        if len(items) and count:
            rounds = [rng.permutation(items) for _ in range(math.ceil(count / len(items)))]
            picks.append(np.concatenate(rounds)[:count])
    return rng.permutation(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


@dataclass
class EpochPlan:
    """Per draw: the two films of the ICL pair (two of the study's films, or one film twice), their
    views (distinct when the film is the same), the text source and which of its pairs."""

    films: np.ndarray  # [D, 2]
    views: np.ndarray  # [D, 2]
    texts: np.ndarray  # [D]
    pairs: np.ndarray  # [D]


def study_members(cache: Cache) -> list[np.ndarray]:
    """Each study's readable training films."""
    layout = cache.layout
    readable = np.flatnonzero(cache.film_ok)
    order = readable[np.argsort(layout.study_of[readable], kind="stable")]
    bounds = np.searchsorted(layout.study_of[order], np.arange(len(layout.study_texts) + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(layout.study_texts))]


def epoch_plan(cache: Cache, members: list[np.ndarray], weights: Sequence[float], rng) -> EpochPlan:
    """The epoch's draws: studies by their tables' weights (studies without a readable film left out)."""
    layout = cache.layout
    sources = np.where([len(m) > 0 for m in members], layout.study_sources, -1)
    studies = epoch_order(sources, weights, rng)
    films, views = np.zeros((len(studies), 2), dtype=np.int64), np.zeros((len(studies), 2), dtype=np.int64)
    for row, study in enumerate(studies):
        own = members[study]
        if len(own) > 1:
            films[row] = rng.choice(own, 2, replace=False)
            views[row] = rng.integers(0, cache.views, 2)
        else:
            films[row] = own[0]
            views[row] = rng.choice(cache.views, 2, replace=False)
    texts = layout.study_texts[studies]
    return EpochPlan(films, views, texts, rng.integers(0, cache.text_pairs, len(studies)))


def global_batches(draws: int, batch_size: int, world: int) -> list[slice]:
    """Consecutive global batches, each trimmed to a multiple of ``world`` (and at least 2 draws)."""
    batches = []
    for first in range(0, draws, batch_size):
        size = min(batch_size, draws - first) // world * world
        if size >= max(2, world):
            batches.append(slice(first, first + size))
    return batches


class StepInputs(Dataset):
    """This process's slice of each global batch, read from the cache (DataLoader workers may read)."""

    def __init__(self, cache: Cache, plan: EpochPlan, batches: list[slice], ranks: Ranks) -> None:
        self.cache, self.plan, self.batches, self.ranks = cache, plan, batches, ranks

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.batches[step]
        share = (batch.stop - batch.start) // self.ranks.world
        first = batch.start + self.ranks.rank * share
        mine = slice(first, first + share)
        cache, plan = self.cache, self.plan
        inputs = {}
        for k in range(2):
            rows = plan.films[mine, k] * cache.views + plan.views[mine, k]
            inputs[f"pooled{k}"] = torch.from_numpy(cache.train_pooled.read(rows))
            inputs[f"maps{k}"] = torch.from_numpy(cache.train_maps.read(rows))
        inputs["texts"] = torch.from_numpy(cache.texts.read(plan.texts[mine] * cache.text_pairs + plan.pairs[mine]))
        return inputs


class Trained(nn.Module):
    """What trains, as one module for DDP: the tail and heads on cached inputs → features, scale."""

    def __init__(self, backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, inputs: dict[str, torch.Tensor]):
        backbone = self.backbone
        images = [backbone.image_head(with_tail(backbone, inputs[f"pooled{k}"], inputs[f"maps{k}"])) for k in range(2)]
        texts = [backbone.text_head(inputs["texts"][:, k].to(backbone.device)) for k in range(2)]
        return images, texts, backbone.logit_scale


def _autocast(settings: PretrainSettings, device: torch.device):
    if settings.precision == "32":
        return nullcontext()
    dtype = torch.bfloat16 if settings.precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Run:
    """A training run's moving parts."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    settings: PretrainSettings
    ranks: Ranks
    workers: int
    device: torch.device


def _epoch(run: Run, cache: Cache, members, rng, progress: bool) -> dict:
    settings, ranks, device = run.settings, run.ranks, run.device
    plan = epoch_plan(cache, members, source_weights(settings, cache.sources), rng)
    batches = global_batches(len(plan.texts), settings.batch_size, ranks.world)
    loader = DataLoader(
        StepInputs(cache, plan, batches, ranks), batch_size=None, num_workers=run.workers, prefetch_factor=None
    )
    totals: dict[str, list[float]] = {}
    bar = tqdm(total=len(plan.texts), desc="training", unit="film", leave=False, disable=not progress)
    for step, inputs in enumerate(loader):
        batch = batches[step]
        groups = torch.from_numpy(plan.texts[batch]).to(device)
        syncing = (step + 1) % settings.accumulate == 0 or step == len(batches) - 1
        with maybe_no_sync(run.model, syncing):
            with _autocast(settings, device):
                images, texts, scale = run.model(inputs)
            images = [gather_with_grad(x.float(), ranks) for x in images]
            texts = [gather_with_grad(x.float(), ranks) for x in texts]
            losses = cxr_clip_loss(images, texts, groups, scale.float(), settings.icl_weight, settings.tcl_weight)
            run.scaler.scale(losses["loss"] / settings.accumulate).backward()
        if syncing:
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.optimizer.zero_grad(set_to_none=True)
        for key, value in losses.items():
            totals.setdefault(key, []).append(float(value.detach()))
        bar.update(batch.stop - batch.start)
    bar.close()
    return {key: float(np.mean(values)) for key, values in totals.items()}


def source_weights(settings: PretrainSettings, sources: list[str]) -> list[float]:
    """Per-table draws per study per epoch: the settings' weights for the ``--data`` tables in order,
    1 for the rest (e.g. ``--normals``)."""
    if len(settings.source_weights) > len(sources):
        raise SettingsError(f"{len(settings.source_weights)} --source-weights for {len(sources)} tables")
    return [*settings.source_weights, *[1.0] * (len(sources) - len(settings.source_weights))]


def _optimizer(backbone, settings: PretrainSettings) -> torch.optim.Optimizer:
    groups = [{"params": backbone.head_parameters(), "lr": settings.lr}]
    if backbone.tail_parameters():
        groups.append({"params": backbone.tail_parameters(), "lr": settings.tower_lr})
    return torch.optim.AdamW(groups, weight_decay=settings.weight_decay)


def _differences(stored: dict, identity: dict) -> list[str]:
    """What two run identities differ in: their parts, and by name within the settings."""
    names = []
    for part in sorted(set(stored) | set(identity)):
        old, new = stored.get(part), identity.get(part)
        if part == "settings" and isinstance(old, dict) and isinstance(new, dict):
            names += [f"settings.{name}" for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
        elif old != new:
            names.append(part)
    return names


def resumable_state(state_path: Path, identity: dict) -> dict | None:
    """The training state in ``state_path`` to resume, None when there is none. A state of other data
    or settings is refused, naming what differs: its run's backbone would otherwise be overwritten."""
    if not state_path.is_file():
        return None
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    stored, wanted = json.loads(state.get("identity") or "{}"), json.loads(json.dumps(identity))
    if stored == wanted:
        return state
    differs = _differences(stored, wanted)
    raise SettingsError(
        f"{state_path.parent} holds a pre-training of other data or settings ({', '.join(differs)} differ): "
        "choose another --out (copy its cache/ folder there to reuse the encoded films)"
    )


def _train(
    backbone,
    cache: Cache,
    settings: PretrainSettings,
    identity: dict,
    state_path: Path,
    progress: bool,
    ranks: Ranks = Ranks(),
    workers: int = 0,
    resumed: dict | None = None,
):
    """AdamW on the heads and the tower's tail, one validation per epoch (rank 0), each epoch's state
    written to ``state_path``; continues ``resumed`` (:func:`resumable_state`), whatever number of
    processes wrote it. Returns (history, best) on rank 0."""
    torch.manual_seed(settings.seed)
    backbone.image_head.reset_parameters()
    backbone.text_head.reset_parameters()
    optimizer = _optimizer(backbone, settings)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    scaler = torch.amp.GradScaler(backbone.device.type, enabled=settings.precision == "16-mixed")
    history, best, start = [], {"epoch": 0, "val_auc": -1.0, "learned": backbone.learned_state_dict()}, 0
    if resumed is not None:
        backbone.load_learned(resumed["learned"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        start, history, best = resumed["epoch"], resumed["history"], resumed["best"]
        if start < settings.epochs and ranks.main:
            log.info("resuming %s at epoch %d of %d", state_path.parent, start + 1, settings.epochs)
    model = data_parallel(Trained(backbone), ranks, backbone.device)
    run = Run(model, optimizer, scaler, settings, ranks, workers, backbone.device)
    members = study_members(cache)
    shown = progress and ranks.main
    for epoch in tqdm(
        range(start, settings.epochs),
        desc="pre-training",
        unit="epoch",
        disable=not shown,
        initial=start,
        total=settings.epochs,
    ):
        began = time.perf_counter()
        rng = np.random.default_rng([settings.seed, epoch])
        record = {"epoch": epoch + 1, **_epoch(run, cache, members, rng, shown)}
        scheduler.step()
        record["seconds"] = round(time.perf_counter() - began, 1)
        if ranks.main:
            record["val_zero_shot_auc"] = validation_aucs(backbone, cache)
            history.append(record)
            selecting = record["val_zero_shot_auc"][cache.sources[0]]["words"]
            if selecting > best["val_auc"]:
                best = {"epoch": epoch + 1, "val_auc": selecting, "learned": backbone.learned_state_dict()}
            state = {
                "identity": json.dumps(identity, sort_keys=True),
                "learned": backbone.learned_state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "best": best,
            }
            atomic_write(state_path, lambda tmp, state=state: torch.save(state, tmp))
        barrier(ranks)
    return history, best
