"""Scoring throughput: five views batched with cached text features vs one view at a time.

Run: python benchmarks/scoring.py [--backbone tiny|PATH] [--images 64] [--batch-size 32]

The one-at-a-time reference scores each image at each view in its own forward pass and
encodes that view's prompts every time, as a plain loop over (image, view) would.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ppad.backbones import load_backbone
from ppad.methods import PPADModel
from ppad.methods.inference import predict_views


def one_view_at_a_time(model: PPADModel, images: np.ndarray) -> np.ndarray:
    out = np.zeros((len(images), len(model.regions)), dtype=np.float32)
    with torch.no_grad():
        for i, image in enumerate(images):
            x = model.preprocessing.normalize(torch.from_numpy(image[None]))
            for view in range(len(model.regions)):
                logits = model.class_logits(x, torch.tensor([view]))  # re-encodes the prompts
                out[i, view] = logits.softmax(-1)[0, 1].item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = PPADModel(load_backbone(args.backbone)).eval()
    images = np.random.default_rng(0).random((args.images, 224, 224)).astype(np.float32)
    predict_views(model, images[:2])  # warm-up
    start = time.perf_counter()
    batched = predict_views(model, images, args.batch_size)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    single = one_view_at_a_time(model, images)
    slow = time.perf_counter() - start
    print(
        f"backbone {model.backbone.architecture.name}, {args.images} images x 5 views, {torch.get_num_threads()} threads"
    )
    print(
        f"batched + cached text: {args.images / fast:.1f} images/s; one view at a time: {args.images / slow:.1f} images/s: "
        f"{slow / fast:.1f}x faster (max probability difference {np.abs(batched - single).max():.1e})"
    )


if __name__ == "__main__":
    main()
