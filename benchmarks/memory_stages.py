"""Which image-tower stages the few-shot memory (``knn``) pools, chosen on NIH ``val``, never ZhangLab.

Run: python benchmarks/memory_stages.py --backbone cxr-lite --backbone cxr-lite-1 [--nih ../shared/data/nih-cxr8]

For each backbone and candidate stage set: the memory holds 64 NIH ``train`` normals (5 draws,
seeds 0–4) and scores NIH ``val`` (adults, 93 normal / 85 pneumonia) by the cosine distance to the
nearest one, exactly as ``knn`` does; prints the AUC, mean ± std over the draws. NIH ``val`` comes
from other hospitals than cxr-pool's COVID-19 films, so a stage that learned the pool's hospitals
gains nothing here. Stage -1 is the tower's 1280-channel head.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from ppad.backbones import load_backbone
from ppad.data import load_images
from ppad.pretraining import read_films

STAGES = (2, 3, 4, -1)
SHOTS, DRAWS = 64, 5


def pooled_stages(backbone, images: np.ndarray, batch_size: int = 32) -> dict[int, torch.Tensor]:
    """Unit-norm pooled features of every candidate stage, one pass per batch."""
    normalize, chunks = backbone.architecture.preprocessing.normalize, []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            chunks.append(backbone.stage_features(normalize(torch.from_numpy(images[i : i + batch_size])), STAGES))
    return {stage: torch.cat([chunk[k] for chunk in chunks]) for k, stage in enumerate(STAGES)}


def knn_auc(features: dict[int, torch.Tensor], stages, support: np.ndarray, val: np.ndarray, labels) -> float:
    joined = F.normalize(torch.cat([features[s] for s in stages], dim=-1), dim=-1)
    distance = 1 - (joined[val] @ joined[support].T).max(dim=1).values
    return float(roc_auc_score(labels, distance.numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", action="append", required=True)
    parser.add_argument("--nih", default="../shared/data/nih-cxr8")
    args = parser.parse_args()
    films = read_films(args.nih)
    normals = [f for f in films if f.split == "train" and not f.findings]
    val = [f for f in films if f.split == "val" and (not f.findings or "Pneumonia" in f.findings)]
    labels = np.array([int(bool(f.findings)) for f in val])
    candidates = [c for r in (1, 2, 3) for c in itertools.combinations(STAGES, r)]
    for spec in args.backbone:
        backbone = load_backbone(spec)
        images = load_images([f.path for f in normals + val], backbone.architecture.preprocessing, "reading").images
        features = pooled_stages(backbone, images)
        draws = [np.random.default_rng(seed).choice(len(normals), SHOTS, replace=False) for seed in range(DRAWS)]
        val_index = np.arange(len(normals), len(normals) + len(val))
        print(f"{spec} (memory stages as shipped: {list(backbone.architecture.memory_stages)}):")
        for stages in candidates:
            aucs = [knn_auc(features, stages, draw, val_index, labels) for draw in draws]
            print(f"  stages {','.join(map(str, stages)):>8}: NIH val knn AUC {np.mean(aucs):.3f} ± {np.std(aucs):.3f}")


if __name__ == "__main__":
    main()
