"""Scoring throughput on CPU: the exported ONNX graph in onnxruntime vs the same model in PyTorch.

Run: python benchmarks/onnx_scoring.py [--run RUN] [--method ppad] [--images 128] [--batch-size 32]

Without --run, a ``--method`` model on the shipped cxr-lite backbone (prompts at their
initialisation, memory filled from 16 of the films) stands in for a trained run: throughput does
not depend on what the prompts learned. Both runtimes score the same resized films (decoding
excluded), side by side in one process, after a warm-up batch each.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ppad.backbones import load_backbone
from ppad.export.onnx import export_onnx
from ppad.export.runtime import OnnxScorer
from ppad.methods import get_method
from ppad.runs import RunFolder
from ppad.scoring import DetectorScorer


def images_per_second(scorer, images: np.ndarray) -> tuple[float, np.ndarray]:
    scorer.score(images[:2])  # warm-up
    start = time.perf_counter()
    _, scores = scorer.score(images)
    return len(images) / (time.perf_counter() - start), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--method", default="ppad")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    if args.run:
        run = RunFolder(args.run)
        model, method = run.load_model(device="cpu"), run.read_manifest().identity.method
    else:
        torch.manual_seed(0)
        method = args.method
        model = get_method(method).build(load_backbone("cxr-lite", device="cpu"))
    size = model.preprocessing.image_size
    films = np.random.default_rng(0).random((args.images, size, size), dtype=np.float32)
    if not args.run:
        model.prepare(films[-16:])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, method, path, {"benchmark": True}, films[:8])
        size = os.path.getsize(path) / 2**20
        onnx_rate, onnx_scores = images_per_second(OnnxScorer(path, args.batch_size), films)
    torch_rate, torch_scores = images_per_second(DetectorScorer(model, args.batch_size), films)
    print(
        f"{method} on {model.backbone.source}, {args.images} films, batch {args.batch_size}, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores; model.onnx {size:.1f} MiB"
    )
    print(
        f"onnxruntime {onnx_rate:.1f} images/s, PyTorch {torch_rate:.1f} images/s: {onnx_rate / torch_rate:.2f}x "
        f"(max score difference {np.abs(onnx_scores - torch_scores).max():.1e})"
    )


if __name__ == "__main__":
    main()
