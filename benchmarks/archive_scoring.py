"""Archive scoring at scale: images/s and peak RSS of `ppad score` (streamed, prefetching, appending)
vs the in-memory scorer (`score_files`, then one CSV at the end), at 1k and 10k files.

Run: python benchmarks/archive_scoring.py [--sizes 1000,10000] [--backbone tiny] [--method ppad]

The files are made from real ZhangLab films (../shared/data/zhanglab) by flips and crops (generated
films when absent), written once to a temporary folder. Each measurement runs in a fresh process
so that its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ppad.data import discover, read_image, write_demo_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "zhanglab"

MEASURE = """
import resource, sys, time
from pathlib import Path
from ppad.data import list_images
from ppad.runs import RunFolder
from ppad.scoring import DetectorScorer, score_files
from ppad.scoring.archive import Provenance, score_archive
from ppad.scoring.rows import csv_columns
run, films, out, mode = RunFolder(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
model = run.load_model(device="cpu")
paths = list_images(films)
start = time.perf_counter()
if mode == "stream":
    provenance = Provenance.of(run.root, run.prompts_path(), "best", csv_columns(model.view_names))
    score_archive(DetectorScorer(model), paths, out, provenance, progress=False)
else:
    score_files(model, paths, progress=False).write_csv(out)
seconds = time.perf_counter() - start
print(len(paths) / seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def sources() -> list[np.ndarray]:
    if SHARED.is_dir():
        return [read_image(item.path) for item in discover(SHARED).test[:20]]
    data = write_demo_dataset(Path(tempfile.mkdtemp()) / "demo", n_train=20, seed=0)
    return [read_image(p) for p in discover(data).train_normals[:20]]


def make_films(folder: Path, count: int, films: list[np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        film = films[i % len(films)]
        if rng.random() < 0.5:
            film = film[:, ::-1]
        h, w = film.shape
        top, left = rng.integers(0, h // 8 + 1), rng.integers(0, w // 8 + 1)
        crop = film[top : top + h - h // 8, left : left + w - w // 8]
        Image.fromarray((crop * 255).astype(np.uint8)).save(folder / f"{i:06d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--method", default="ppad")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ppad-archive-"))
    films = sources()
    make_films(work / "train" / "normal", 24, films)
    make_films(work / "test" / "normal", 2, films)
    make_films(work / "test" / "abnormal", 2, films)
    run = work / "run"
    train = [sys.executable, "-m", "ppad.cli.main", "train", "--data", str(work), "--out", str(run), "--quiet"]
    train += ["--backbone", args.backbone, "--method", args.method, "--shots", "16", "--val-size", "8"]
    subprocess.run([*train, "--epochs", "1", "--device", "cpu"], check=True)
    print(f"backbone {args.backbone}, method {args.method}; films from {'ZhangLab' if SHARED.is_dir() else 'demo'}")
    print(f"{'files':>7} {'streamed img/s':>15} {'peak RSS':>9} {'in-memory img/s':>16} {'peak RSS':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        folder = work / f"archive-{size}"
        make_films(folder, size, films)
        results = []
        for mode in ("stream", "memory"):
            done = subprocess.run(
                [sys.executable, "-c", MEASURE, str(run), str(folder), str(work / f"{mode}-{size}.csv"), mode],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append([float(v) for v in done.stdout.split()])
        (s_rate, s_rss), (m_rate, m_rss) = results
        print(f"{size:>7} {s_rate:>15.1f} {s_rss:>7.0f} MiB {m_rate:>16.1f} {m_rss:>7.0f} MiB")


if __name__ == "__main__":
    main()
