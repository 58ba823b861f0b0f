"""Scoring speed of the default detector through PyTorch, side by side with ``knn`` (issue 26's target: ≥ 8 films/s).

Run: OMP_NUM_THREADS=2 python benchmarks/default_speed.py [--backbone cxr-lite] [--films 128] [--batch-size 32]

Both methods get the same 64 ZhangLab train normals as support (seed 0) and score the same
``--films`` other ZhangLab train normals (never the test split), in memory, end to end: lung
segmentation (each method on films its segmentation memo has not seen), the tower, the memory
search, calibration. Best of 3 runs each; prints films/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ppad.backbones import load_backbone
from ppad.data import discover, draw_few_shot, load_images
from ppad.lungs.frames import shipped_frame_lung_fields
from ppad.methods import get_method
from ppad.methods.defaults import default_detector
from ppad.methods.inference import predict_views

SHOTS = 64
REPEATS = 3


def films_per_second(model, films: np.ndarray, batch_size: int) -> float:
    times = []
    for _ in range(REPEATS):
        shipped_frame_lung_fields.cache_clear()  # segment every film again: it is part of scoring
        start = time.perf_counter()
        predict_views(model, films, batch_size)
        times.append(time.perf_counter() - start)
    return len(films) / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="cxr-lite")
    parser.add_argument("--zhanglab", default="../shared/data/zhanglab")
    parser.add_argument("--films", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    backbone = load_backbone(args.backbone)
    default = default_detector(args.backbone)
    methods = {  # shown name → (method, its settings)
        f"{default.method} (default)": (default.method, default.overrides()),
        "knn --region-set lungs": ("knn", {"region_set": "lungs"}),
    }
    split = draw_few_shot(discover(args.zhanglab).train_normals, SHOTS, args.films, seed=0)
    speeds = {}
    for name, (method, settings) in methods.items():
        spec = get_method(method)
        torch.manual_seed(0)
        model = spec.build(backbone, spec.config(**settings))
        support = load_images(split.support, model.preprocessing, progress=False).images
        films = load_images(split.validation, model.preprocessing, progress=False).images
        model.prepare(support, args.batch_size)
        model.calibrate(films[:8], np.zeros(8, int), args.batch_size)
        speeds[name] = films_per_second(model, films, args.batch_size)
        print(f"{name:<28} {speeds[name]:6.1f} films/s ({len(films)} films, batch {args.batch_size})")
    first, second = speeds.values()
    print(f"ratio default / knn: {first / second:.2f}; threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
