"""What pre-training reads once: the frozen towers' outputs on every film (augmented views of the
training films, the val films) and on every text, cached on disk by what they were built from.

The cache is a folder of :class:`~ppad.pretraining.rows.RowFile` arrays written in units (a chunk
of films or of texts) shared out among the processes, each unit marked done when written: a run
killed while encoding starts again where it stopped, with any number of processes. Memory stays
bounded by one unit however long the table.

Texts: every training film has a text source — its report (sections, sampled by sentences:
:mod:`ppad.pretraining.reports`), or, when its row has no text, its label set (label prompts,
:mod:`ppad.pretraining.texts`). Identical reports or label sets are one source, so the films
that share one are positives of each other. Each source caches ``text_pairs`` pairs of texts:
a pair is one TCL positive (two sections of a report, two sentence samples of it, or two
prompts of a label set).

Studies: films of one ``study`` (within one table) form a study; a film without one is a study
of its own. The epoch draws studies; a study's text is its first film's.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
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
from ppad.pretraining.distributed import Ranks, barrier
from ppad.pretraining.films import Film
from ppad.pretraining.reports import fit_pieces, report_pair, sentences
from ppad.pretraining.rows import RowFile
from ppad.pretraining.texts import label_text

log = logging.getLogger("ppad")


CACHE_FOLDER = "cache"


READ_CHUNK = 256  # films read and encoded at a time: bounds memory on large tables


TEXT_CHUNK = 256  # text sources encoded at a time


TARGET_FINDINGS = ("Pneumonia", "COVID-19")  # a val film with either is "pneumonia" for zero-shot AUC


PRECISIONS = ("32", "bf16-mixed", "16-mixed")


@dataclass(frozen=True)
class PretrainSettings:
    epochs: int = 60
    batch_size: int = 128  # the global batch: split among the processes
    lr: float = 1e-3  # heads and logit scale
    tower_lr: float = 1e-4  # the image tower's trained tail
    weight_decay: float = 1e-4
    views: int = 4  # augmented views cached per training film
    text_pairs: int = 8  # text pairs cached per text source (report or label set)
    icl_weight: float = 1.0
    tcl_weight: float = 1.0
    source_weights: tuple[float, ...] = ()  # draws per study per epoch, per --data table in order; () = 1 each
    seed: int = 0
    precision: str = "32"
    accumulate: int = 1  # global batches per optimizer step

    def __post_init__(self) -> None:
        if self.views < 2:
            raise SettingsError("--views must be at least 2 (ICL contrasts two views of a film)")
        for name in ("epochs", "batch_size", "text_pairs", "accumulate"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1")
        if any(not weight > 0 for weight in self.source_weights):
            raise SettingsError(f"--source-weights must be positive, not {list(self.source_weights)}")
        if self.precision not in PRECISIONS:
            raise SettingsError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "source_weights": list(self.source_weights)}


@dataclass
class Layout:
    """Who is who in the cache (small, in memory): films, studies, text sources, val labels."""

    train: list[Film]
    val: list[Film]
    sources: list[str]  # table names, in --data order
    film_sources: np.ndarray  # [N] table index of each training film
    study_of: np.ndarray  # [N] study index of each training film
    study_texts: np.ndarray  # [S] text source of each study
    study_sources: np.ndarray  # [S] table index of each study
    text_keys: list[tuple]  # ("labels", findings) or ("report", sections)
    val_labels: np.ndarray  # [M] 1 = a target finding, 0 = no finding, -1 = other or unlabelled
    val_sources: np.ndarray  # [M]
    mixed_text_studies: int  # studies whose films carry different texts (the first film's is used)


def _val_label(film: Film) -> int:
    if film.findings is None:
        return -1
    return 1 if set(TARGET_FINDINGS) & set(film.findings) else (0 if not film.findings else -1)


def _text_key(film: Film) -> tuple:
    return ("report", film.sections) if film.sections else ("labels", film.findings)


def plan_layout(films: list[Film]) -> Layout:
    """Studies and text sources of the training films, labels of the val films (deterministic)."""
    sources = list(dict.fromkeys(f.source for f in films))
    train = [f for f in films if f.split == "train"]
    val = [f for f in films if f.split == "val"]
    if not train or not val:
        raise DataError("pre-training needs films in both the train and the val split")
    study_index: dict[tuple[str, str], int] = {}
    text_index: dict[tuple, int] = {}
    study_of, study_texts, study_sources, mixed = [], [], [], set()
    for number, film in enumerate(train):
        key = (film.source, film.study or f"\0{number}")
        text = text_index.setdefault(_text_key(film), len(text_index))
        if key not in study_index:
            study_index[key] = len(study_index)
            study_texts.append(text)
            study_sources.append(sources.index(film.source))
        elif study_texts[study_index[key]] != text:
            mixed.add(study_index[key])
        study_of.append(study_index[key])
    return Layout(
        train=train,
        val=val,
        sources=sources,
        film_sources=np.array([sources.index(f.source) for f in train]),
        study_of=np.array(study_of),
        study_texts=np.array(study_texts),
        study_sources=np.array(study_sources),
        text_keys=list(text_index),
        val_labels=np.array([_val_label(f) for f in val]),
        val_sources=np.array([sources.index(f.source) for f in val]),
        mixed_text_studies=len(mixed),
    )


@dataclass
class Cache:
    """The frozen towers' outputs on disk, and who they belong to."""

    layout: Layout
    views: int
    text_pairs: int
    train_pooled: RowFile  # [N·V, F] pooled frozen stages, row film·V + view
    train_maps: RowFile  # [N·V, C, h, w] float16 map the tail starts from ([N·V, 0] when none trains)
    val_pooled: RowFile  # [M, F]
    val_maps: RowFile  # [M, C, h, w]
    texts: RowFile  # [T·P, 2, text_width] sentence embeddings, row source·P + pair
    film_ok: np.ndarray  # [N] readable training films
    val_ok: np.ndarray  # [M] readable val films
    encoding_seconds: float | None = None  # this run's encoding time on rank 0 (None: all of it reused)

    @property
    def sources(self) -> list[str]:
        return self.layout.sources


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


def text_pairs_of(key: tuple, pairs: int, rng: np.random.Generator, tokenizer) -> list[tuple[str, str]]:
    """``pairs`` TCL pairs of one text source: two prompts of a label set, or two sentence samples
    (two sections, when it has several) of a report, each within the text tower's context."""
    kind, content = key
    if kind == "labels":
        return [(label_text(content, rng), label_text(content, rng)) for _ in range(pairs)]

    def count(text: str) -> int:
        return len(tokenizer.encode(text))

    budget = tokenizer.context_length - 2  # [CLS] … [SEP]
    sections = [fit_pieces(sentences(section), count, budget) for section in content]
    sections = [section for section in sections if section]
    return [report_pair(sections, rng, count, budget) for _ in range(pairs)]


class _Files:
    """The cache folder's arrays, by name, each opened once (one descriptor per array)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._opened: dict[str, RowFile] = {}

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npy"

    def create(self, backbone: DualTowerBackbone, layout: Layout, settings: PretrainSettings, units: int) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        with torch.no_grad():
            pooled, maps = backbone.front_features(torch.zeros(1, 3, 224, 224, device=backbone.device))
        n, m, v = len(layout.train), len(layout.val), settings.views
        shapes = {
            "train_pooled": (n * v, pooled.shape[1:], "float32"),
            "train_maps": (n * v, maps.shape[1:], "float16"),
            "val_pooled": (m, pooled.shape[1:], "float32"),
            "val_maps": (m, maps.shape[1:], "float16"),
            "texts": (len(layout.text_keys) * settings.text_pairs, (2, backbone.text_width), "float32"),
            "film_ok": (n, (), "uint8"),
            "val_ok": (m, (), "uint8"),
            "done": (units, (), "uint8"),
        }
        for name, (rows, shape, dtype) in shapes.items():
            RowFile.create(self.path(name), rows, tuple(shape), dtype)

    def open(self, name: str) -> RowFile:
        if name not in self._opened:
            self._opened[name] = RowFile(self.path(name))
        return self._opened[name]


def _units(layout: Layout) -> list[tuple[str, int]]:
    """The encoding work: (kind, first index) per chunk of training films, val films and text sources."""
    return (
        [("train", i) for i in range(0, len(layout.train), READ_CHUNK)]
        + [("val", i) for i in range(0, len(layout.val), READ_CHUNK)]
        + [("texts", i) for i in range(0, len(layout.text_keys), TEXT_CHUNK)]
    )


def _encode_films(
    backbone: DualTowerBackbone, films: list[Film], views: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pooled, maps, readable) of one chunk: ``views`` augmented views per film (film-major rows),
    or the film as it is when ``views`` is 0. Unreadable films keep zero rows and are flagged."""
    loaded = load_images([f.path for f in films], backbone.architecture.preprocessing, progress=False)
    for failure in loaded.failures:
        log.warning("skipped unreadable film %s", failure)
    readable = {Path(p) for p in loaded.paths}
    ok = np.array([f.path in readable for f in films], dtype=np.uint8)
    images = torch.zeros(len(films), *loaded.images.shape[1:])
    images[torch.from_numpy(ok.astype(bool))] = torch.from_numpy(loaded.images)
    if not views:
        pooled, maps = _front(backbone, images)
        return pooled.numpy(), maps.numpy(), ok
    torch.manual_seed(seed)  # each chunk's augmentations depend on the chunk, not on the process encoding it
    augment = augmentation()
    fronts = [_front(backbone, torch.stack([augment(i[None])[0] for i in images])) for _ in range(views)]
    pooled = torch.stack([front[0] for front in fronts], dim=1).flatten(0, 1)
    maps = torch.stack([front[1] for front in fronts], dim=1).flatten(0, 1)
    return pooled.numpy(), maps.numpy(), ok


def _encode_unit(files: _Files, unit: tuple[str, int], backbone, layout: Layout, settings: PretrainSettings) -> None:
    """Encode and write one unit."""
    kind, first = unit
    if kind == "texts":
        keys = layout.text_keys[first : first + TEXT_CHUNK]
        texts = [
            text
            for offset, key in enumerate(keys)
            for pair in text_pairs_of(
                key, settings.text_pairs, np.random.default_rng([settings.seed, first + offset]), backbone.tokenizer
            )
            for text in pair
        ]
        embedded = _sentence_embeddings(backbone, texts).reshape(len(keys) * settings.text_pairs, 2, -1)
        files.open("texts").write(first * settings.text_pairs, embedded.numpy())
        return
    films = (layout.train if kind == "train" else layout.val)[first : first + READ_CHUNK]
    views = settings.views if kind == "train" else 0
    pooled, maps, ok = _encode_films(backbone, films, views, settings.seed * 1_000_003 + first)
    rows = first * max(views, 1)
    files.open(f"{kind}_pooled").write(rows, pooled)
    files.open(f"{kind}_maps").write(rows, maps)
    files.open("film_ok" if kind == "train" else "val_ok").write(first, ok)


def cached_tower_outputs(
    folder: Path,
    identity: dict,
    backbone: DualTowerBackbone,
    films: list[Film],
    settings: PretrainSettings,
    ranks: Ranks = Ranks(),
    progress: bool = True,
) -> Cache:
    """The cache in ``folder`` if it was built from the same films, towers and encoding settings
    (views, text pairs, seed: not epochs or weights, so a variant run can start from a copy);
    otherwise it is built, or its unfinished units are, shared out among the processes."""
    layout = plan_layout(films)
    _check_validation(layout)
    key = json.dumps(identity, sort_keys=True)
    files, marker = _Files(folder), folder / "identity.json"
    units = _units(layout)
    if ranks.main and (not marker.is_file() or marker.read_text() != key):
        files.create(backbone, layout, settings, len(units))
        atomic_write(marker, lambda tmp: tmp.write_text(key))
    barrier(ranks)
    done = files.open("done")
    todo = [i for i, flag in enumerate(done.read(range(len(units)))) if not flag]
    if todo and ranks.main:
        log.info("encoding %d of %d cache units with %d process(es)", len(todo), len(units), ranks.world)
    began = time.perf_counter()
    bar = tqdm(total=len(todo), desc="encoding films and texts", unit="chunk", disable=not (progress and ranks.main))
    for index in todo[ranks.rank :: ranks.world]:  # the processes' units are interleaved: similar loads
        _encode_unit(files, units[index], backbone, layout, settings)
        done.write(index, np.ones(1, dtype=np.uint8))
        bar.update(min(ranks.world, bar.total - bar.n))
    bar.close()
    barrier(ranks)
    return Cache(
        layout=layout,
        views=settings.views,
        text_pairs=settings.text_pairs,
        **{name: files.open(name) for name in ("train_pooled", "train_maps", "val_pooled", "val_maps", "texts")},
        film_ok=files.open("film_ok").read(range(len(layout.train))).astype(bool),
        val_ok=files.open("val_ok").read(range(len(layout.val))).astype(bool),
        encoding_seconds=round(time.perf_counter() - began, 1) if todo else None,
    )


def _check_validation(layout: Layout) -> None:
    """The first table's val split must hold both classes: it selects the epoch."""
    selecting = layout.val_labels[layout.val_sources == 0]
    if not {0, 1} <= set(selecting.tolist()):
        raise DataError(
            f"{layout.sources[0]}'s val split needs films with {' or '.join(TARGET_FINDINGS)} and films with No "
            f"Finding to select an epoch (found {int((selecting == 1).sum())} and {int((selecting == 0).sum())})"
        )


def with_tail(backbone: DualTowerBackbone, pooled: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The whole image-head input from the cached frozen part and the (trainable) tail."""
    device = backbone.device
    return torch.cat([pooled.to(device), backbone.tail_features(maps.to(device).float())], dim=-1)
