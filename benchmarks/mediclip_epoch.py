"""MediCLIP's seconds per epoch on cxr-lite, and its validation with the frozen features kept vs
recomputed every epoch.

Run: python benchmarks/mediclip_epoch.py [--data ../shared/data/zhanglab] [--shots 16,64] [--epochs 3]

Real ZhangLab train normals (support and 64 held-out validation normals drawn as ``ppad train``
draws them, seed 0), the ``ppad`` preset's training (batch 8, Adam, focal + Dice, MediCLIP's
synthesis). Prints, per shot count, the mean seconds of a training epoch and of a validation pass
(128 films: the normals, then each with an anomaly) with the validation films' tower features
computed once (what ``ppad train`` does) and recomputed, and their ratio, side by side.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ppad.backbones import load_backbone
from ppad.data import discover, draw_few_shot, load_images
from ppad.data.batches import validation_batch
from ppad.methods import get_method
from ppad.methods.presets import MEDICLIP_PPAD
from ppad.synthesis import get_synthesis
from ppad.training import TrainSettings
from ppad.training.loop import OPTIMIZERS, _train_epoch


def seconds(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.mean(times))


def measure(backbone, index, shots: int, repeats: int) -> str:
    settings = MEDICLIP_PPAD.settings(TrainSettings(shots=shots))
    torch.manual_seed(0)
    model = get_method("mediclip").build(backbone)
    split = draw_few_shot(index.train_normals, shots, settings.validation_size, 0)
    support = load_images(split.support, model.preprocessing, progress=False).images
    held_out = load_images(split.validation, model.preprocessing, progress=False).images
    task = get_synthesis(settings.synthesis, sources=support)
    validation = validation_batch(held_out, model.region_masks(held_out), task, 0)
    optimizer, _ = OPTIMIZERS[settings.optimizer]([p for p in model.parameters() if p.requires_grad], settings)
    masks, rng = model.region_masks(support), np.random.default_rng(0)
    train = seconds(lambda: _train_epoch(model, optimizer, support, task, masks, rng, settings), repeats)
    model.eval()
    model.validation_metrics(validation, settings.batch_size)  # the first pass computes the features
    kept = seconds(lambda: model.validation_metrics(validation, settings.batch_size), repeats)

    def recomputed() -> None:
        model.validation_features.clear()
        model.validation_metrics(validation, settings.batch_size)

    fresh = seconds(recomputed, repeats)
    return (
        f"{shots} shots: training {train:.2f} s/epoch; validation ({len(validation.images)} films) "
        f"{kept:.2f} s with the tower's features kept vs {fresh:.2f} s recomputed ({fresh / kept:.1f}×); "
        f"epoch with validation {train + kept:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/zhanglab"))
    parser.add_argument("--shots", default="16,64")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    backbone = load_backbone("cxr-lite", device="cpu")
    index = discover(args.data)
    for shots in args.shots.split(","):
        print(measure(backbone, index, int(shots), args.epochs))


if __name__ == "__main__":
    main()
