"""``ppad pretrain``: CXR-CLIP pre-training of a dual-tower backbone on labelled films.

What learns: the heads, the logit scale and the image tower's tail (its last ``trained_stages``
stages and head convolution, ``DualTowerSpec``); the rest of both towers stays as the wheels ship
it. What stays frozen is run once and cached: for ``views`` augmented views per training film, the
feature map the tail starts from (float16) and the pooled frozen stages; a pool of label texts per
label set, encoded. An epoch then runs only the tail and the heads. Several labelled tables train
together, each drawn ``source_weights[i]`` times per film per epoch. Selection: zero-shot AUC
(``pneumonia`` vs ``normal`` prompts, as ``ppad``'s zeroshot method scores) on the first table's
``val`` split; every table's val AUC is reported beside it. The ``test`` split is never read.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torchvision.transforms import v2
from tqdm.auto import tqdm

from ppad import __version__
from ppad.backbones.dual_tower import DualTowerBackbone, DualTowerSpec
from ppad.backbones.factory import PRETRAINED_FILE, save_dual_tower
from ppad.backbones.towers import get_tower, sha256_of
from ppad.data import load_images
from ppad.errors import DataError, SettingsError
from ppad.io import atomic_write, write_json
from ppad.pretraining.films import Film, films_digest, normal_films, read_films, source_name
from ppad.pretraining.losses import cxr_clip_loss
from ppad.pretraining.texts import text_pool, texts_digest

log = logging.getLogger("ppad")

STATE_FILE = "pretrain_state.pt"
CACHE_FILE = "features.pt"
TARGET_FINDINGS = ("Pneumonia", "COVID-19")  # a val film with either is "pneumonia" for zero-shot AUC
ZERO_SHOT_PROMPTS = {"words": ("normal", "pneumonia"), "chexzero": ("no pneumonia", "pneumonia")}
READ_CHUNK = 1024  # films read and encoded at a time (bounds memory on large tables)
TAIL_CHUNK = 256


@dataclass(frozen=True)
class PretrainSettings:
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3  # heads and logit scale
    tower_lr: float = 1e-4  # the image tower's trained tail
    weight_decay: float = 1e-4
    views: int = 4  # augmented views cached per training film
    texts_per_label: int = 16  # texts cached per label set
    icl_weight: float = 1.0
    tcl_weight: float = 1.0
    source_weights: tuple[float, ...] = ()  # draws per film per epoch, per --data table in order; () = 1 each
    seed: int = 0

    def __post_init__(self) -> None:
        if self.views < 2:
            raise SettingsError("--views must be at least 2 (ICL contrasts two views of a film)")
        for name in ("epochs", "batch_size", "texts_per_label"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1")
        if any(not weight > 0 for weight in self.source_weights):
            raise SettingsError(f"--source-weights must be positive, not {list(self.source_weights)}")

    def to_dict(self) -> dict:
        return {**asdict(self), "source_weights": list(self.source_weights)}


@dataclass
class Cache:
    """Frozen tower outputs: the head input's frozen part and the tail's starting map per view,
    sentence embeddings per text."""

    train_pooled: torch.Tensor  # [N, V, F] pooled frozen stages
    train_maps: torch.Tensor  # [N, V, C, h, w] float16 where the tail starts ([N, V, 0] when none trains)
    train_groups: torch.Tensor  # [N] label-set id
    train_sources: torch.Tensor  # [N] index into sources
    val_pooled: torch.Tensor  # [M, F]
    val_maps: torch.Tensor  # [M, C, h, w]
    val_labels: torch.Tensor  # [M] 1 = a target finding, 0 = no finding, -1 = other
    val_sources: torch.Tensor  # [M]
    texts: torch.Tensor  # [G, T, text_width]
    label_sets: list[tuple[str, ...]]
    sources: list[str]


def augmentation() -> v2.Compose:
    """Global and anatomy-preserving only: crop/scale, small rotation, brightness/contrast. No flips
    (they swap the lungs), nothing local in intensity (ICL would teach the tower to ignore opacities)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(224, scale=(0.7, 1.0), ratio=(0.85, 1.15), antialias=True),
            v2.RandomRotation(10),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
        ]
    )


def _head_inputs(backbone: DualTowerBackbone, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """The full image-head input of [0, 1] images, through the inference (folded) tower."""
    preprocessing = backbone.architecture.preprocessing
    with torch.no_grad():
        return torch.cat(
            [
                backbone.image_head_inputs(preprocessing.normalize(images[i : i + batch_size].to(backbone.device)))
                for i in range(0, len(images), batch_size)
            ]
        ).cpu()


def _front(backbone: DualTowerBackbone, images: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, ...]:
    """(pooled frozen stages, float16 tail-start maps) of [0, 1] images."""
    preprocessing, pooled, maps = backbone.architecture.preprocessing, [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            front = backbone.front_features(preprocessing.normalize(images[i : i + batch_size].to(backbone.device)))
            pooled.append(front[0].cpu())
            maps.append(front[1].cpu().half().contiguous())
    return torch.cat(pooled), torch.cat(maps)


def _sentence_embeddings(backbone: DualTowerBackbone, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    with torch.no_grad():
        chunks = []
        for i in range(0, len(texts), batch_size):
            ids = backbone.tokenize(texts[i : i + batch_size]).to(backbone.device)
            chunks.append(backbone.sentence_embeddings(backbone.token_embeddings(ids), backbone.eot_index(ids)))
        return torch.cat(chunks).cpu()


def _encode_films(
    films: list[Film], backbone: DualTowerBackbone, views: int, desc: str, progress: bool
) -> tuple[list[Film], torch.Tensor, torch.Tensor]:
    """Read films in chunks; (kept films, pooled, maps) with a views axis when ``views`` > 0
    (augmented) or none (the film as it is)."""
    augment, kept, pooled, maps = augmentation(), [], [], []
    bar = tqdm(total=len(films), desc=desc, unit="film", disable=not progress)
    for first in range(0, len(films), READ_CHUNK):
        chunk = films[first : first + READ_CHUNK]
        loaded = load_images([f.path for f in chunk], backbone.architecture.preprocessing, progress=False)
        for failure in loaded.failures:
            log.warning("skipped unreadable film %s", failure)
        readable = set(loaded.paths)
        kept += [f for f in chunk if f.path in readable]
        images = torch.from_numpy(loaded.images)
        if views:
            fronts = [_front(backbone, torch.stack([augment(i[None])[0] for i in images])) for _ in range(views)]
            pooled.append(torch.stack([front[0] for front in fronts], dim=1))
            maps.append(torch.stack([front[1] for front in fronts], dim=1))
        else:
            front = _front(backbone, images)
            pooled.append(front[0])
            maps.append(front[1])
        bar.update(len(chunk))
    bar.close()
    return kept, torch.cat(pooled), torch.cat(maps)


def _val_label(film: Film) -> int:
    return 1 if set(TARGET_FINDINGS) & set(film.findings) else (0 if not film.findings else -1)


def build_cache(
    backbone: DualTowerBackbone, films: list[Film], settings: PretrainSettings, progress: bool = True
) -> Cache:
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    sources = list(dict.fromkeys(f.source for f in films))
    train, train_pooled, train_maps = _encode_films(
        [f for f in films if f.split == "train"], backbone, settings.views, "encoding train films", progress
    )
    val, val_pooled, val_maps = _encode_films([f for f in films if f.split == "val"], backbone, 0, "val", progress)
    if not train or not val:
        raise DataError("pre-training needs films in both the train and the val split")
    label_sets = sorted({f.findings for f in train})
    group_of = {labels: i for i, labels in enumerate(label_sets)}
    texts = [text for labels in label_sets for text in text_pool(labels, settings.texts_per_label, rng)]
    embedded = _sentence_embeddings(backbone, texts).reshape(len(label_sets), settings.texts_per_label, -1)
    val_labels = torch.tensor([_val_label(f) for f in val])
    selecting = val_labels[torch.tensor([f.source == sources[0] for f in val])]
    if not {0, 1} <= set(selecting.tolist()):
        raise DataError(
            f"{sources[0]}'s val split needs films with {' or '.join(TARGET_FINDINGS)} and films with No Finding "
            f"to select an epoch (found {int((selecting == 1).sum())} and {int((selecting == 0).sum())})"
        )
    return Cache(
        train_pooled=train_pooled,
        train_maps=train_maps,
        train_groups=torch.tensor([group_of[f.findings] for f in train]),
        train_sources=torch.tensor([sources.index(f.source) for f in train]),
        val_pooled=val_pooled,
        val_maps=val_maps,
        val_labels=val_labels,
        val_sources=torch.tensor([sources.index(f.source) for f in val]),
        texts=embedded,
        label_sets=label_sets,
        sources=sources,
    )


def zero_shot_auc(backbone: DualTowerBackbone, head_inputs: torch.Tensor, labels) -> dict[str, float]:
    """Validation AUC of the zero-shot prompt pairs (target finding vs no finding)."""
    labels = np.asarray(labels)
    keep = labels >= 0
    with torch.no_grad():
        image = F.normalize(backbone.image_head(head_inputs.to(backbone.device)), dim=-1)
        result = {}
        for name, prompts in ZERO_SHOT_PROMPTS.items():
            text = F.normalize(backbone.encode_text(backbone.tokenize(list(prompts)).to(backbone.device)), dim=-1)
            probability = (image @ text.T).softmax(dim=-1)[:, 1].cpu().numpy()
            result[name] = float(roc_auc_score(labels[keep], probability[keep]))
    return result


def _with_tail(backbone: DualTowerBackbone, pooled: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The whole image-head input from the cached frozen part and the (trainable) tail."""
    device = backbone.device
    return torch.cat([pooled.to(device), backbone.tail_features(maps.to(device).float())], dim=-1)


def validation_aucs(backbone: DualTowerBackbone, cache: Cache) -> dict[str, dict[str, float]]:
    """Zero-shot AUC on each table's val split (tables without both classes are left out)."""
    with torch.no_grad():
        inputs = torch.cat(
            [
                _with_tail(backbone, cache.val_pooled[i : i + TAIL_CHUNK], cache.val_maps[i : i + TAIL_CHUNK])
                for i in range(0, len(cache.val_labels), TAIL_CHUNK)
            ]
        )
    result = {}
    for index, source in enumerate(cache.sources):
        mask = cache.val_sources == index
        if {0, 1} <= set(cache.val_labels[mask].tolist()):
            result[source] = zero_shot_auc(backbone, inputs[mask], cache.val_labels[mask].numpy())
    return result


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


def _cached_tower_outputs(path: Path, identity: dict, backbone, films, settings, progress: bool) -> Cache:
    """The cache in ``path`` if it was built from the same films, towers and encoding settings (views,
    texts, seed: not epochs or weights, so a variant run can start from a copy), else a new one."""
    key = json.dumps(identity, sort_keys=True)
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
    except Exception as error:  # noqa: BLE001 - an unreadable cache is rebuilt, never trusted
        log.warning("rebuilding %s: it cannot be read safely (%s)", path, type(error).__name__)
        stored = {}
    if stored.get("identity") == key:
        cache = stored["cache"]
        return Cache(**{**cache, "label_sets": [tuple(labels) for labels in cache["label_sets"]]})
    cache = build_cache(backbone, films, settings, progress)
    plain = {**asdict(cache), "label_sets": [list(labels) for labels in cache.label_sets]}
    atomic_write(path, lambda tmp: torch.save({"identity": key, "cache": plain}, tmp))
    return cache


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


def _tables(data: str | Path | Sequence[str | Path]) -> list[Path]:
    tables = [Path(data)] if isinstance(data, str | Path) else [Path(table) for table in data]
    names = [source_name(table) for table in tables]
    if len(set(names)) != len(names):
        raise SettingsError(f"--data tables need distinct names, got {names}")
    return tables


def pretrain(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    settings: PretrainSettings = PretrainSettings(),
    spec: DualTowerSpec = DualTowerSpec(),
    device: str = "cpu",
    progress: bool = True,
    normals: str | Path | None = None,
) -> dict:
    """Pre-train into ``out/backbone.safetensors`` (+ ``backbone.json``); resumable.

    ``data``: one labelled table or several (trained together, drawn by ``settings.source_weights``;
    the first one's val split selects the epoch). ``normals``: a detection data set whose training
    normals join the training films as ``No Finding`` (selection stays on the first table's val).
    """
    out, tables = Path(out), _tables(data)
    extra = normal_films(normals) if normals is not None else []
    films = [film for table in tables for film in read_films(table)] + extra
    backbone = DualTowerBackbone(spec).to(device)  # heads and tail trainable, the rest frozen
    sources = dict.fromkeys(f.source for f in films)
    digests = {source: films_digest([f for f in films if f.source == source]) for source in sources}
    # The memory's stages do not change what trains: a finished run re-run with other ones only rewrites.
    trained = {key: value for key, value in spec.to_dict().items() if key != "memory_stages"}
    identity = {"settings": settings.to_dict(), "spec": trained, "data_sha256": digests, "texts_sha256": texts_digest()}
    encoded = {key: settings.to_dict()[key] for key in ("views", "texts_per_label", "seed")}
    out.mkdir(parents=True, exist_ok=True)
    cache = _cached_tower_outputs(
        out / CACHE_FILE, {**identity, "settings": encoded}, backbone, films, settings, progress
    )
    history, best = _train(backbone, cache, settings, identity, out / STATE_FILE, progress)
    backbone.load_learned(best["learned"])
    weights = source_weights(settings, cache.sources)
    record = {
        "ppad_version": __version__,
        "command": sys.argv,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **identity,
        "spec": spec.to_dict(),
        "data": {
            "tables": [
                {
                    "name": source,
                    "source": str(Path(table).resolve()),
                    "weight": weights[index],
                    "train_films": int((cache.train_sources == index).sum()),
                    "val_films": int((cache.val_sources == index).sum()),
                }
                for index, (source, table) in enumerate(zip(cache.sources, [*tables, *([normals] if extra else [])]))
            ],
            "test_split": "never read",
            "label_sets": len(cache.label_sets),
        },
        "towers": {
            name: {"sha256": get_tower(name).sha256, "file": get_tower(name).weights_path().name}
            for name in (spec.image_tower, spec.text_tower)
        },
        "selection": f"epoch with the best zero-shot AUC (words prompts) on {cache.sources[0]}'s val split",
        "best_epoch": best["epoch"],
        "validation": validation_aucs(backbone, cache),
        "history": history,
    }
    save_dual_tower(backbone, out / PRETRAINED_FILE, record)
    record["weights_sha256"] = sha256_of(out / PRETRAINED_FILE)
    write_json(out / "manifest.json", record)
    return record
