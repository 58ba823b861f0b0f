"""Peak memory of ``ppad pretrain`` against the number of films: flat, the cache lives on disk.

Run: python benchmarks/pretrain_memory.py [--films 500,2000,8000]

For each size, a table of that many synthetic training films (noise PNGs; what is measured is
memory, not learning) plus 16 val films is pre-trained for one epoch (2 views, 2 text pairs per
label set, global batch 128) in a fresh process, whose peak resident memory (``ru_maxrss``) is
printed beside the size of its cache on disk — what a design holding every cached feature in
memory would need on top. Printed ratio: peak RSS at the largest size / at the smallest.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FINDINGS = ("No Finding", "Pneumonia", "Effusion", "Atelectasis|Effusion")


def _table(folder: Path, films: int) -> Path:
    rng = np.random.default_rng(films)
    (folder / "images").mkdir(parents=True)
    rows = []
    for index in range(films + 16):
        name = f"images/{index:06d}.png"
        Image.fromarray(rng.integers(0, 256, (96, 96), dtype=np.uint8)).save(folder / name)
        if index < films:
            rows.append({"image": name, "findings": FINDINGS[index % len(FINDINGS)], "split": "train"})
        else:
            rows.append({"image": name, "findings": ("No Finding", "Pneumonia")[index % 2], "split": "val"})
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "findings", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _peak_mib(command: list[str]) -> float:
    """Peak RSS of ``command`` run in a fresh child of a fresh interpreter (its own ``ru_maxrss``)."""
    probe = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if done.returncode == 0 else done.stderr)"
    )
    output = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True).stdout.strip()
    try:
        return int(output) / 1024
    except ValueError:
        raise SystemExit(f"pre-training failed: {output}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--films", default="500,2000,8000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.films.split(",")]
    print(f"{'films':>7} {'peak RSS':>10} {'cache on disk':>14}")
    peaks = []
    with tempfile.TemporaryDirectory() as scratch:
        for films in sizes:
            table, out = _table(Path(scratch) / f"t{films}", films), Path(scratch) / f"run{films}"
            command = [sys.executable, "-m", "ppad.cli.main", "pretrain", "--data", str(table), "--out", str(out)]
            options = ["--epochs", "1", "--views", "2", "--text-pairs", "2", "--batch-size", "128", "--quiet"]
            peaks.append(_peak_mib([*command, *options, "--device", "cpu"]))
            disk = sum(path.stat().st_blocks * 512 for path in (out / "cache").iterdir()) / 2**20
            print(f"{films:>7} {peaks[-1]:>7.0f} MiB {disk:>10.0f} MiB", flush=True)
    print(f"peak RSS at {sizes[-1]} films / at {sizes[0]}: {peaks[-1] / peaks[0]:.2f}x")


if __name__ == "__main__":
    main()
