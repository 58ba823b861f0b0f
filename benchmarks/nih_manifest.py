"""Write the NIH ChestX-ray8 test manifest of issue 26: train on NIH ``train`` normals, test on held-out films.

Run: python benchmarks/nih_manifest.py --out runs/nih_test.csv [--nih ../shared/data/nih-cxr8]

``path,label,split`` rows (absolute paths): the ``train`` No-Finding films as ``train`` normals (the
support and validation normals are drawn from them); the test split = ``val`` No Finding (label 0) and
``val`` Pneumonia (1), plus the ``test`` split's films (every one carries Pneumonia; the boxed films
of ``ppad evaluate --boxes``). The ``train`` pneumonia films are left out (the selection protocol of
``benchmarks/select_defaults.py`` saw them). Then, e.g.::

    ppad train --data runs/nih_test.csv --seed 0 --out runs/nih-default-s0
    ppad evaluate --run runs/nih-default-s0
    ppad evaluate --run runs/nih-default-s0 --boxes ../shared/data/nih-cxr8/boxes.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def manifest_rows(nih: Path) -> list[tuple[str, int, str]]:
    rows = []
    with open(nih / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            path = str((nih / row["image"]).resolve())
            normal, pneumonia = row["findings"] == "No Finding", "Pneumonia" in row["findings"].split("|")
            if row["split"] == "train" and normal:
                rows.append((path, 0, "train"))
            elif row["split"] == "val" and (normal or pneumonia):
                rows.append((path, int(pneumonia), "test"))
            elif row["split"] == "test":
                rows.append((path, 1, "test"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nih", type=Path, default=Path("../shared/data/nih-cxr8"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = manifest_rows(args.nih)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    test = [label for _, label, split in rows if split == "test"]
    print(f"{args.out}: {len(rows) - len(test)} train normals; test {test.count(0)} normal, {sum(test)} pneumonia")


if __name__ == "__main__":
    main()
