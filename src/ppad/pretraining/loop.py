"""The pre-training loop: epochs over the cached outputs, one validation each, resumable."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ppad.errors import SettingsError
from ppad.io import atomic_write
from ppad.pretraining.data import Cache, PretrainSettings, _with_tail
from ppad.pretraining.losses import cxr_clip_loss
from ppad.pretraining.selection import validation_aucs

log = logging.getLogger("ppad")


STATE_FILE = "pretrain_state.pt"


def epoch_order(sources: torch.Tensor, weights: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """One epoch's films: ``round(weight × n)`` draws from each table of n films (each film once
    before any repeats), shuffled together."""
    sources, picks = sources.numpy(), []
    for index, weight in enumerate(weights):
        films = np.flatnonzero(sources == index)
        count = round(weight * len(films))
        if len(films) and count:
            rounds = [rng.permutation(films) for _ in range(math.ceil(count / len(films)))]
            picks.append(np.concatenate(rounds)[:count])
    return rng.permutation(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def _epoch(backbone, optimizer, cache: Cache, settings: PretrainSettings, rng, progress: bool) -> dict:
    order = epoch_order(cache.train_sources, source_weights(settings, cache.sources), rng)
    totals: dict[str, list[float]] = {}
    for first in tqdm(range(0, len(order), settings.batch_size), desc="steps", leave=False, disable=not progress):
        index = torch.from_numpy(order[first : first + settings.batch_size])
        if len(index) < 2:
            continue
        pick_views = torch.from_numpy(np.stack([rng.choice(settings.views, 2, replace=False) for _ in index]))
        pick_texts = torch.from_numpy(rng.integers(0, settings.texts_per_label, size=(len(index), 2)))
        groups = cache.train_groups[index]
        images = []
        for k in range(2):
            rows = (index, pick_views[:, k])
            images.append(backbone.image_head(_with_tail(backbone, cache.train_pooled[rows], cache.train_maps[rows])))
        texts = [backbone.text_head(cache.texts[groups, pick_texts[:, k]].to(backbone.device)) for k in range(2)]
        losses = cxr_clip_loss(
            (images[0], images[1]),
            (texts[0], texts[1]),
            groups.to(backbone.device),
            backbone.logit_scale,
            settings.icl_weight,
            settings.tcl_weight,
        )
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        for key, value in losses.items():
            totals.setdefault(key, []).append(float(value.detach()))
    return {key: float(np.mean(values)) for key, values in totals.items()}


def source_weights(settings: PretrainSettings, sources: list[str]) -> list[float]:
    """Per-table draws per film per epoch: the settings' weights for the ``--data`` tables in order,
    1 for the rest (e.g. ``--normals``)."""
    if len(settings.source_weights) > len(sources):
        raise SettingsError(f"{len(settings.source_weights)} --source-weights for {len(sources)} tables")
    return [*settings.source_weights, *[1.0] * (len(sources) - len(settings.source_weights))]


def _train(backbone, cache: Cache, settings: PretrainSettings, identity: dict, state_path: Path, progress: bool):
    """AdamW on the heads and the tower's tail, one validation per epoch; resumes from ``state_path``."""
    torch.manual_seed(settings.seed)
    backbone.image_head.reset_parameters()
    backbone.text_head.reset_parameters()
    groups = [{"params": backbone.head_parameters(), "lr": settings.lr}]
    if backbone.tail_parameters():
        groups.append({"params": backbone.tail_parameters(), "lr": settings.tower_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    history, best, start = [], {"epoch": 0, "val_auc": -1.0, "learned": backbone.learned_state_dict()}, 0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("identity") == json.dumps(identity, sort_keys=True):
            backbone.load_learned(state["learned"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start, history, best = state["epoch"], state["history"], state["best"]
            if start < settings.epochs:
                log.info("resuming %s at epoch %d of %d", state_path.parent, start + 1, settings.epochs)
    for epoch in tqdm(
        range(start, settings.epochs),
        desc="pre-training",
        unit="epoch",
        disable=not progress,
        initial=start,
        total=settings.epochs,
    ):
        began = time.perf_counter()
        rng = np.random.default_rng([settings.seed, epoch])
        record = {"epoch": epoch + 1, **_epoch(backbone, optimizer, cache, settings, rng, progress)}
        scheduler.step()
        record["seconds"] = round(time.perf_counter() - began, 1)
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
            "epoch": epoch + 1,
            "history": history,
            "best": best,
        }
        atomic_write(state_path, lambda tmp, state=state: torch.save(state, tmp))
    return history, best
