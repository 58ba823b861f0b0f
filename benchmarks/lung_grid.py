"""A picture grid of the shipped lung segmenter on films it never saw: 16 ZhangLab and 16 NIH.

Run: nice -n 5 python benchmarks/lung_grid.py [--out docs/lungs-grid.png] [--seed 0]

ZhangLab (children, 224 px): 8 test normals and 8 test pneumonias; NIH (adults, 512 px): 8 val
"No Finding" and 8 val pneumonias; drawn at random with ``--seed``. Each tile is ``ppad lungs``'s
overlay (cyan = patient's right lung, amber = left; red + midline = not trusted, halves used).
These films have no lung masks: the grid is for looking, the counts it prints are the trust flags.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from PIL import Image

from ppad.data import discover, read_image
from ppad.lungs.model import load_lung_segmenter
from ppad.lungs.overlay import render_lung_overlay

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TILE = 168
COLUMNS = 8


def chosen_films(seed: int) -> list[tuple[Path, str]]:
    """(film, caption) pairs: ZhangLab normals, pneumonias, then NIH normals, pneumonias."""
    pick = random.Random(seed)
    test = discover(SHARED / "zhanglab").test
    zhanglab = [pick.sample([item.path for item in test if item.label == label], 8) for label in (0, 1)]
    with open(SHARED / "nih-cxr8" / "labels.csv", newline="") as handle:
        val = [row for row in csv.DictReader(handle) if row["split"] == "val"]
    nih = [
        pick.sample(
            [SHARED / "nih-cxr8" / row["image"] for row in val if (row["findings"] == "No Finding") == normal], 8
        )
        for normal in (True, False)
    ]
    groups = zip(("ZhangLab normal", "ZhangLab pneumonia", "NIH normal", "NIH pneumonia"), [*zhanglab, *nih])
    return [(path, caption) for caption, paths in groups for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/lungs-grid.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    segmenter = load_lung_segmenter()
    paths = chosen_films(args.seed)
    grid = Image.new("RGB", (COLUMNS * TILE, (len(paths) // COLUMNS) * TILE), "black")
    for index, (path, caption) in enumerate(paths):
        film = read_image(path)
        fields = segmenter.segment([film])[0]
        tile = render_lung_overlay(film, fields, caption).resize((TILE, TILE), Image.Resampling.LANCZOS)
        grid.paste(tile, ((index % COLUMNS) * TILE, (index // COLUMNS) * TILE))
        print(f"{path.relative_to(SHARED)}: {fields.regions} {fields.reason}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.quantize(colors=64).save(args.out, optimize=True)
    print(f"{len(paths)} films → {args.out} ({args.out.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
