"""Zero-shot AUC of shipped or pre-trained backbones on the val splits of labelled tables (never test).

Run: python benchmarks/zero_shot_val.py --backbone cxr-lite [--data ../shared/data/nih-cxr8 --data ../shared/data/cxr-pool]

Positives are films with Pneumonia or COVID-19, negatives No Finding (others left out), as
``ppad pretrain`` validates; prints the ``normal``/``pneumonia`` and CheXzero prompt pairs per table.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ppad.backbones import load_backbone
from ppad.data import load_images
from ppad.pretraining import read_films, zero_shot_auc
from ppad.pretraining.data import _head_inputs, _val_label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", action="append", required=True)
    parser.add_argument("--data", action="append")
    args = parser.parse_args()
    for spec in args.backbone:
        backbone = load_backbone(spec)
        for table in args.data or ["../shared/data/nih-cxr8", "../shared/data/cxr-pool"]:
            films = [f for f in read_films(table) if f.split == "val"]
            images = load_images([f.path for f in films], backbone.architecture.preprocessing, progress=False).images
            labels = np.array([_val_label(f) for f in films])
            auc = zero_shot_auc(backbone, _head_inputs(backbone, torch.from_numpy(images)), labels)
            print(f"{spec} on {table} val ({len(films)} films): " + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()))


if __name__ == "__main__":
    main()
