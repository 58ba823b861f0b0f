"""The bench table with its frozen-feature cache vs every cell running the tower itself.

Run: python benchmarks/bench_cache.py [--data ../shared/data/zhanglab] [--test-per-class 60]
     [--train-normals 200] [--seeds 0,1] [--epochs 2]

A CSV manifest of real ZhangLab films (the first train normals, the first test films of each
class) keeps it short; both tables run the six methods of the README's ZhangLab table on the
shipped cxr-lite backbone, side by side in one process, into separate folders. Prints both wall
times, the ratio and the largest difference of any test score between the two.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ppad.bench import run_bench
from ppad.data import discover, write_manifest
from ppad.training import TrainSettings

METHODS = ["zeroshot", "knn", "coop", "ppad-text", "ppad", "ppad+knn"]


def test_scores(out: Path) -> dict[str, float]:
    scores = {}
    for metrics in sorted((out / "runs").glob("*/seed*/evaluation/metrics.json")):
        cell = metrics.parent.parent.relative_to(out / "runs")
        for row in json.loads(metrics.read_text())["test_split"]:
            scores[f"{cell}:{row['path']}"] = row["score"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/zhanglab"))
    parser.add_argument("--train-normals", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=60)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = TrainSettings(epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "films.csv"
        write_manifest(discover(args.data).subset(args.train_normals, args.test_per_class), manifest)
        walls, outs = {}, {}
        for cache in (False, True):
            outs[cache] = Path(tmp) / f"cache-{cache}"
            start = time.perf_counter()
            results = run_bench(
                manifest,
                outs[cache],
                "cxr-lite",
                METHODS,
                seeds,
                settings=settings,
                cache_features=cache,
                progress=False,
            )
            walls[cache] = time.perf_counter() - start
        plain, cached = test_scores(outs[False]), test_scores(outs[True])
        assert plain.keys() == cached.keys() and plain
        worst = max(abs(plain[k] - cached[k]) for k in plain)
    print(
        f"cxr-lite, {len(METHODS)} methods × {len(seeds)} seeds, {args.epochs} epochs, {2 * args.test_per_class} test films"
    )
    print(f"  every cell runs the tower: {walls[False]:.1f} s")
    print(f"  frozen features cached:    {walls[True]:.1f} s  ({results['feature_cache']})")
    print(f"  {walls[False] / walls[True]:.2f}× faster; largest test-score difference {worst:.1e}")
    np.testing.assert_allclose(list(cached.values()), list(plain.values()), atol=1e-4)


if __name__ == "__main__":
    main()
