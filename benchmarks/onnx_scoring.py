"""Scoring throughput on CPU: the exported ONNX graph in onnxruntime vs the same model in PyTorch.

Run: python benchmarks/onnx_scoring.py [--run RUN | --method ppad --method knn --method ppad+knn]
     [--images 128] [--batch-size 32] [--repeats 2]

Without --run, each ``--method`` (default: ppad, knn and ppad+knn) on the shipped cxr-lite
backbone (prompts at their initialisation, memory filled from 16 of the films) stands in for a
trained run: throughput does not depend on what the prompts learned. Both runtimes score the same
resized films (decoding excluded), side by side in one process, after a warm-up batch each; the
runtimes alternate ``--repeats`` times and each keeps its best rate, so load from other processes
on shared cores weighs on both alike.
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
from ppad.methods.base import PromptDetector
from ppad.runs import RunFolder
from ppad.scoring import DetectorScorer

DEFAULT_METHODS = ("ppad", "knn", "ppad+knn")


def images_per_second(scorer, images: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    _, scores = scorer.score(images)
    return len(images) / (time.perf_counter() - start), scores


def compare(model: PromptDetector, method: str, films: np.ndarray, batch_size: int, repeats: int) -> str:
    """One table row: both runtimes' best films/s on ``films``, their ratio and largest score difference."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, method, path, {"benchmark": True}, films[:8])
        size = os.path.getsize(path) / 2**20
        scorers = {"onnxruntime": OnnxScorer(path, batch_size), "PyTorch": DetectorScorer(model, batch_size)}
        rates: dict[str, float] = dict.fromkeys(scorers, 0.0)
        scores: dict[str, np.ndarray] = {}
        for scorer in scorers.values():
            scorer.score(films[:2])  # warm-up
        for _ in range(repeats):
            for name, scorer in scorers.items():
                rate, scores[name] = images_per_second(scorer, films)
                rates[name] = max(rates[name], rate)
    onnx, pytorch = rates["onnxruntime"], rates["PyTorch"]
    difference = np.abs(scores["onnxruntime"] - scores["PyTorch"]).max()
    return (
        f"| `{method}` | {onnx:.1f} films/s | {pytorch:.1f} films/s | **{onnx / pytorch:.2f}×** "
        f"| {difference:.1e} | {size:.1f} MiB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--method", action="append", default=None, help="repeatable; default: ppad, knn, ppad+knn")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    def random_films(size: int) -> np.ndarray:
        return np.random.default_rng(0).random((args.images, size, size), dtype=np.float32)

    if args.run:
        run = RunFolder(args.run)
        models = {run.read_manifest().identity.method: run.load_model(device="cpu")}
    else:
        backbone = load_backbone("cxr-lite", device="cpu")
        models = {}
        for method in args.method or DEFAULT_METHODS:
            torch.manual_seed(0)
            models[method] = get_method(method).build(backbone).eval()
            models[method].prepare(random_films(models[method].preprocessing.image_size)[-16:])
    source = next(iter(models.values())).backbone.source
    print(
        f"{source}, {args.images} films, batch {args.batch_size}, best of {args.repeats}; "
        f"{torch.get_num_threads()} torch threads, onnxruntime's default threads, {os.cpu_count()} cores"
    )
    print("| method | onnxruntime | PyTorch | ratio | max score difference | model.onnx |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method, model in models.items():
        films = random_films(model.preprocessing.image_size)
        print(compare(model, method, films, args.batch_size, args.repeats), flush=True)


if __name__ == "__main__":
    main()
