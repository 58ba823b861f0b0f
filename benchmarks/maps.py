"""What anomaly maps cost: maps/s of each map method next to scores/s, on the same images.

Run: python benchmarks/maps.py [--run RUN_DIR | --backbone cxr-lite --method ppad+knn] [--images 32] [--batch-size 16]

Without ``--run`` the method is built untrained on the backbone (prompts at their initial values,
the memory filled with 8 generated chest-like films): what is timed is the same either way.
Both sides take the same preprocessed images in memory, so reading films is not counted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ppad.backbones import load_backbone
from ppad.data.synthetic import chest_like
from ppad.maps import anomaly_maps, applicable_map_methods
from ppad.methods import get_method
from ppad.methods.inference import predict_views
from ppad.runs import load_run


def rate(work, n: int) -> float:
    work(2)  # warm-up
    start = time.perf_counter()
    work(n)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", help="a trained run folder (overrides --backbone/--method)")
    parser.add_argument("--backbone", default="cxr-lite")
    parser.add_argument("--method", default="ppad+knn")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    films = np.stack([chest_like(rng, 224)[0] for _ in range(args.images + 8)])
    if args.run:
        model = load_run(args.run)
    else:
        model = get_method(args.method).build(load_backbone(args.backbone)).eval()
        model.prepare(films[-8:])
    images = films[: args.images]
    scores_per_s = rate(lambda n: predict_views(model, images[:n], args.batch_size), args.images)
    print(
        f"{args.run or args.method} on {model.backbone.source}, {args.images} images of 224 px, "
        f"batch {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"{'scores':<14} {scores_per_s:8.1f} images/s")
    for name in applicable_map_methods(model):
        maps_per_s = rate(
            lambda n, name=name: anomaly_maps(model, images[:n], name, args.batch_size, lungs=False), args.images
        )
        print(f"{name + ' map':<14} {maps_per_s:8.1f} images/s   {scores_per_s / maps_per_s:5.1f}x the time of scoring")


if __name__ == "__main__":
    main()
