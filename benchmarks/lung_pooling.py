"""Whether ``knn`` should pool its memory over the lung fields: validation evidence only, never a test split.

Run: python benchmarks/lung_pooling.py [--backbone cxr-lite] [--nih ../shared/data/nih-cxr8] [--zhanglab ../shared/data/zhanglab]

Side by side, the memory pooled over the whole film (``knn``, today's default) and over each film's
lung fields (``knn --region-set lungs``), on two validation sets:

* NIH ChestX-ray8 ``val`` (adults, real pneumonia vs No Finding): 64 NIH ``train`` normals in
  the memory, 5 draws (seeds 0–4);
* ZhangLab's validation split as ``ppad train`` draws it (seeds 0–4: 64 support normals, 64
  held-out train normals, each also with a SAS anomaly), with the anomalies placed both ways —
  anywhere in an image half and inside the lung fields — so that neither variant is judged on
  its own placement alone.

Prints the AUC per variant and set, mean ± std over the 5 draws. ZhangLab's test split is never read.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from ppad.backbones import load_backbone
from ppad.data import discover, draw_few_shot, load_images
from ppad.data.batches import validation_batch
from ppad.methods import get_method
from ppad.methods.inference import predict_views
from ppad.pretraining import read_films
from ppad.regions import LUNG_REGIONS, PPAD_REGIONS
from ppad.synthesis import get_synthesis

SEEDS = range(5)
SHOTS = 64
VARIANTS = {"whole film": "whole", "lung fields": "lungs"}


def knn_auc(model, support: np.ndarray, images: np.ndarray, labels: np.ndarray) -> float:
    model.prepare(support)
    return float(roc_auc_score(labels, predict_views(model, images)[:, 0]))


def report(name: str, aucs: dict[str, list[float]]) -> None:
    for variant, values in aucs.items():
        print(f"  {name:<42} {variant:<12} AUC {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="cxr-lite")
    parser.add_argument("--nih", default="../shared/data/nih-cxr8")
    parser.add_argument("--zhanglab", default="../shared/data/zhanglab")
    args = parser.parse_args()
    backbone = load_backbone(args.backbone)
    spec = get_method("knn")
    models = {variant: spec.build(backbone, spec.config(region_set=rs)) for variant, rs in VARIANTS.items()}
    preprocessing = next(iter(models.values())).preprocessing

    films = read_films(args.nih)
    normals = [f for f in films if f.split == "train" and not f.findings]
    val = [f for f in films if f.split == "val" and (not f.findings or "Pneumonia" in f.findings)]
    labels = np.array([int(bool(f.findings)) for f in val])
    nih_normals = load_images([f.path for f in normals], preprocessing, "NIH train normals").images
    nih_val = load_images([f.path for f in val], preprocessing, "NIH val").images
    aucs: dict[str, list[float]] = {variant: [] for variant in models}
    for seed in SEEDS:
        draw = np.random.default_rng(seed).choice(len(nih_normals), SHOTS, replace=False)
        for variant, model in models.items():
            aucs[variant].append(knn_auc(model, nih_normals[draw], nih_val, labels))
    print(f"{args.backbone}, memory of {SHOTS} normals, seeds {list(SEEDS)}:")
    report(f"NIH val ({labels.sum()} pneumonia / {(labels == 0).sum()} normal)", aucs)

    index = discover(args.zhanglab)
    placed = {"SAS in image halves": PPAD_REGIONS, "SAS in lung fields": LUNG_REGIONS}
    by_placement = {name: {variant: [] for variant in models} for name in placed}
    for seed in SEEDS:
        split = draw_few_shot(index.train_normals, SHOTS, SHOTS, seed)
        support = load_images(split.support, preprocessing, progress=False).images
        held_out = load_images(split.validation, preprocessing, progress=False).images
        task = get_synthesis("sas", sources=support)
        for name, regions in placed.items():
            masks = models["lung fields"].region_masks(held_out) if regions.per_film else regions.pixel_masks(224)
            batch = validation_batch(held_out, masks, task, seed)
            for variant, model in models.items():
                by_placement[name][variant].append(knn_auc(model, support, batch.images, batch.labels))
    for name, results in by_placement.items():
        report(f"ZhangLab val (held-out normals, {name})", results)


if __name__ == "__main__":
    main()
