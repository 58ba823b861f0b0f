"""``ppad pretrain``: CXR-CLIP pre-training of a dual-tower backbone's heads on labelled films.

Both towers stay frozen as their wheels ship them (a measured choice, see the README), so their
outputs are computed once and cached: ``views`` augmented views per training film (for ICL and
augmentation) and a pool of label texts per label set (for TCL and the image–text loss). Epochs
then cost milliseconds. Selection: zero-shot AUC on the ``val`` split (``pneumonia`` vs
``normal`` prompts, as ``ppad``'s zeroshot method scores), never the ``test`` split.
"""

from __future__ import annotations

import json
import logging
import sys
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
from ppad.pretraining.films import Film, films_digest, normal_films, read_films
from ppad.pretraining.losses import cxr_clip_loss
from ppad.pretraining.texts import text_pool

log = logging.getLogger("ppad")

STATE_FILE = "pretrain_state.pt"
CACHE_FILE = "features.pt"
TARGET_FINDING = "Pneumonia"
ZERO_SHOT_PROMPTS = {"words": ("normal", "pneumonia"), "chexzero": ("no pneumonia", "pneumonia")}


@dataclass(frozen=True)
class PretrainSettings:
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    views: int = 4  # augmented views cached per training film
    texts_per_label: int = 16  # texts cached per label set
    icl_weight: float = 1.0
    tcl_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.views < 2:
            raise SettingsError("--views must be at least 2 (ICL contrasts two views of a film)")
        for name in ("epochs", "batch_size", "texts_per_label"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Cache:
    """Frozen tower outputs: image-head inputs per view, sentence embeddings per text."""

    train_images: torch.Tensor  # [N, V, F]
    train_groups: torch.Tensor  # [N] label-set id
    val_images: torch.Tensor  # [M, F]
    val_labels: np.ndarray  # [M] 1 = target finding, 0 = no finding, -1 = other
    texts: torch.Tensor  # [G, T, text_width]
    label_sets: list[tuple[str, ...]]


def augmentation() -> v2.Compose:
    """Mild, anatomy-preserving: crop/scale, small rotation, brightness/contrast. No flips."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(224, scale=(0.7, 1.0), ratio=(0.85, 1.15), antialias=True),
            v2.RandomRotation(10),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
        ]
    )


def _head_inputs(backbone: DualTowerBackbone, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    preprocessing = backbone.architecture.preprocessing
    with torch.no_grad():
        return torch.cat(
            [
                backbone.image_head_inputs(preprocessing.normalize(images[i : i + batch_size].to(backbone.device)))
                for i in range(0, len(images), batch_size)
            ]
        ).cpu()


def _sentence_embeddings(backbone: DualTowerBackbone, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    with torch.no_grad():
        chunks = []
        for i in range(0, len(texts), batch_size):
            ids = backbone.tokenize(texts[i : i + batch_size]).to(backbone.device)
            chunks.append(backbone.sentence_embeddings(backbone.token_embeddings(ids), backbone.eot_index(ids)))
        return torch.cat(chunks).cpu()


def _images(films: list[Film], backbone: DualTowerBackbone, desc: str, progress: bool) -> tuple[np.ndarray, list]:
    loaded = load_images([f.path for f in films], backbone.architecture.preprocessing, desc, progress)
    for failure in loaded.failures:
        log.warning("skipped unreadable film %s", failure)
    kept = set(loaded.paths)
    return loaded.images, [f for f in films if f.path in kept]


def build_cache(
    backbone: DualTowerBackbone, films: list[Film], settings: PretrainSettings, progress: bool = True
) -> Cache:
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    train_images, train = _images([f for f in films if f.split == "train"], backbone, "reading train films", progress)
    val_images, val = _images([f for f in films if f.split == "val"], backbone, "reading val films", progress)
    if not len(train) or not len(val):
        raise DataError("pre-training needs films in both the train and the val split")
    augment = augmentation()
    views = []
    for _ in tqdm(range(settings.views), desc="caching augmented views", disable=not progress):
        batch = torch.stack([augment(torch.from_numpy(image)[None])[0] for image in train_images])
        views.append(_head_inputs(backbone, batch))
    label_sets = sorted({f.findings for f in train})
    group_of = {labels: i for i, labels in enumerate(label_sets)}
    texts = [text for labels in label_sets for text in text_pool(labels, settings.texts_per_label, rng)]
    embedded = _sentence_embeddings(backbone, texts).reshape(len(label_sets), settings.texts_per_label, -1)
    val_labels = np.array([1 if TARGET_FINDING in f.findings else (0 if not f.findings else -1) for f in val])
    if not {0, 1} <= set(val_labels.tolist()):
        raise DataError(
            f"the val split needs films with {TARGET_FINDING} and films with No Finding to select an epoch "
            f"(found {int((val_labels == 1).sum())} and {int((val_labels == 0).sum())})"
        )
    return Cache(
        train_images=torch.stack(views, dim=1),
        train_groups=torch.tensor([group_of[f.findings] for f in train]),
        val_images=_head_inputs(backbone, torch.from_numpy(val_images)),
        val_labels=val_labels,
        texts=embedded,
        label_sets=label_sets,
    )


def zero_shot_auc(backbone: DualTowerBackbone, val_inputs: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Validation AUC of the zero-shot prompt pairs (target finding vs no finding)."""
    keep = labels >= 0
    with torch.no_grad():
        image = F.normalize(backbone.image_head(val_inputs.to(backbone.device)), dim=-1)
        result = {}
        for name, prompts in ZERO_SHOT_PROMPTS.items():
            text = F.normalize(backbone.encode_text(backbone.tokenize(list(prompts)).to(backbone.device)), dim=-1)
            probability = (image @ text.T).softmax(dim=-1)[:, 1].cpu().numpy()
            result[name] = float(roc_auc_score(labels[keep], probability[keep]))
    return result


def _epoch(backbone, optimizer, cache: Cache, settings: PretrainSettings, rng: np.random.Generator) -> dict:
    order = rng.permutation(len(cache.train_groups))
    totals: dict[str, list[float]] = {}
    for first in range(0, len(order), settings.batch_size):
        index = torch.from_numpy(order[first : first + settings.batch_size])
        if len(index) < 2:
            continue
        pick_views = torch.from_numpy(np.stack([rng.choice(settings.views, 2, replace=False) for _ in index]))
        pick_texts = torch.from_numpy(rng.integers(0, settings.texts_per_label, size=(len(index), 2)))
        groups = cache.train_groups[index]
        images = [backbone.image_head(cache.train_images[index, pick_views[:, k]]) for k in range(2)]
        texts = [backbone.text_head(cache.texts[groups, pick_texts[:, k]]) for k in range(2)]
        losses = cxr_clip_loss(
            (images[0], images[1]),
            (texts[0], texts[1]),
            groups,
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


def _cached_tower_outputs(path: Path, identity: dict, backbone, films, settings, progress: bool) -> Cache:
    """The cache in ``path`` if it was built from the same films, settings and towers, else a new one."""
    key = json.dumps(identity, sort_keys=True)
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
    except Exception as error:  # noqa: BLE001 - an unreadable cache is rebuilt, never trusted
        log.warning("rebuilding %s: it cannot be read safely (%s)", path, type(error).__name__)
        stored = {}
    if stored.get("identity") == key:
        return Cache(
            **{
                **stored["cache"],
                "val_labels": stored["cache"]["val_labels"].numpy(),
                "label_sets": [tuple(labels) for labels in stored["cache"]["label_sets"]],
            }
        )
    cache = build_cache(backbone, films, settings, progress)
    plain = {
        **asdict(cache),
        "val_labels": torch.from_numpy(cache.val_labels),
        "label_sets": [list(labels) for labels in cache.label_sets],
    }
    atomic_write(path, lambda tmp: torch.save({"identity": key, "cache": plain}, tmp))
    return cache


def _train_heads(backbone, cache: Cache, settings: PretrainSettings, state_path: Path, progress: bool):
    """AdamW on the heads, one zero-shot validation per epoch; resumes from ``state_path``."""
    torch.manual_seed(settings.seed)
    backbone.image_head.reset_parameters()
    backbone.text_head.reset_parameters()
    optimizer = torch.optim.AdamW(backbone.head_parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    history, best, start = [], {"epoch": 0, "val_auc": -1.0, "heads": backbone.head_state_dict()}, 0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["identity_settings"] == settings.to_dict():
            backbone.load_heads(state["heads"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start, history, best = state["epoch"], state["history"], state["best"]
    epochs = range(start, settings.epochs)
    for epoch in tqdm(
        epochs, desc="pre-training", unit="epoch", disable=not progress, initial=start, total=settings.epochs
    ):
        rng = np.random.default_rng([settings.seed, epoch])
        record = {"epoch": epoch + 1, **_epoch(backbone, optimizer, cache, settings, rng)}
        scheduler.step()
        record["val_zero_shot_auc"] = zero_shot_auc(backbone, cache.val_images, cache.val_labels)
        history.append(record)
        if record["val_zero_shot_auc"]["words"] > best["val_auc"]:
            best = {
                "epoch": epoch + 1,
                "val_auc": record["val_zero_shot_auc"]["words"],
                "heads": backbone.head_state_dict(),
            }
        state = {
            "identity_settings": settings.to_dict(),
            "heads": backbone.head_state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best": best,
        }
        atomic_write(state_path, lambda tmp, state=state: torch.save(state, tmp))
    return history, best


def pretrain(
    data: str | Path,
    out: str | Path,
    settings: PretrainSettings = PretrainSettings(),
    spec: DualTowerSpec = DualTowerSpec(),
    device: str = "cpu",
    progress: bool = True,
    normals: str | Path | None = None,
) -> dict:
    """Pre-train the heads into ``out/backbone.safetensors`` (+ ``backbone.json``); resumable.

    ``normals``: a detection data set whose training normals join the training films as
    ``No Finding`` (e.g. a site's or a population's normals; selection stays on ``data``'s val).
    """
    out = Path(out)
    extra = normal_films(normals) if normals is not None else []
    films = read_films(data) + extra
    backbone = DualTowerBackbone(spec).to(device)  # heads trainable, towers frozen
    identity = {"settings": settings.to_dict(), "spec": spec.to_dict(), "data_sha256": films_digest(films)}
    out.mkdir(parents=True, exist_ok=True)
    cache = _cached_tower_outputs(out / CACHE_FILE, identity, backbone, films, settings, progress)
    history, best = _train_heads(backbone, cache, settings, out / STATE_FILE, progress)
    backbone.load_heads(best["heads"])
    record = {
        "ppad_version": __version__,
        "command": sys.argv,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **identity,
        "data": {
            "source": str(Path(data).resolve()),
            "normals": {"source": str(Path(normals).resolve()), "films": len(extra)} if extra else None,
            "train_films": int(len(cache.train_groups)),
            "val_films": int(len(cache.val_labels)),
            "test_split": "never read",
            "label_sets": len(cache.label_sets),
        },
        "towers": {
            name: {"sha256": get_tower(name).sha256, "file": get_tower(name).weights_path().name}
            for name in (spec.image_tower, spec.text_tower)
        },
        "selection": "epoch with the best zero-shot AUC (words prompts) on the val split",
        "best_epoch": best["epoch"],
        "validation": zero_shot_auc(backbone, cache.val_images, cache.val_labels),
        "history": history,
    }
    save_dual_tower(backbone, out / PRETRAINED_FILE, record)
    record["heads_sha256"] = sha256_of(out / PRETRAINED_FILE)
    write_json(out / "manifest.json", record)
    return record
