"""What pre-training reads once: the frozen towers' outputs on every film (augmented views of the
training films, the val films) and the label texts, cached on disk by what they were built from."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2
from tqdm.auto import tqdm

from ppad.backbones.dual_tower import DualTowerBackbone
from ppad.data import load_images
from ppad.errors import DataError, SettingsError
from ppad.io import atomic_write
from ppad.pretraining.films import Film
from ppad.pretraining.texts import text_pool

log = logging.getLogger("ppad")


CACHE_FILE = "features.pt"


READ_CHUNK = 1024  # films read and encoded at a time (bounds memory on large tables)


TARGET_FINDINGS = ("Pneumonia", "COVID-19")  # a val film with either is "pneumonia" for zero-shot AUC


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


def _with_tail(backbone: DualTowerBackbone, pooled: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The whole image-head input from the cached frozen part and the (trainable) tail."""
    device = backbone.device
    return torch.cat([pooled.to(device), backbone.tail_features(maps.to(device).float())], dim=-1)


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
