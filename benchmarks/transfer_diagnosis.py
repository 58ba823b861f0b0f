"""Why cxr-lite's prompt methods do not transfer to ZhangLab: the numbers in the README's diagnosis.

Run: python benchmarks/transfer_diagnosis.py [--zhanglab ../shared/data/zhanglab] [--nih ../shared/data/nih-cxr8]

Prints (1) zero-shot AUC on the ZhangLab test split, plain and re-centred on 64 support normals
(a test-set diagnosis, never used to choose anything), (2) how far SAS and CutPaste move a film's
embedding compared with the spread of normal films and NIH's pneumonia/normal gap, and (3) a
logistic probe on the frozen pooled features for SAS.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score

from ppad.backbones import load_backbone
from ppad.data import discover, draw_few_shot, load_images
from ppad.data.batches import validation_batch
from ppad.pretraining import read_films
from ppad.pretraining.pretrain import _head_inputs
from ppad.regions import PPAD_REGIONS
from ppad.synthesis import get_synthesis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zhanglab", default="../shared/data/zhanglab")
    parser.add_argument("--nih", default="../shared/data/nih-cxr8")
    args = parser.parse_args()
    backbone = load_backbone("cxr-lite")
    preprocessing = backbone.architecture.preprocessing

    def inputs(paths) -> torch.Tensor:
        return _head_inputs(backbone, torch.from_numpy(load_images(paths, preprocessing, progress=False).images))

    def embed(head_inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(backbone.image_head(head_inputs), dim=-1)

    index = discover(args.zhanglab)
    labels = np.array([item.label for item in index.test])
    test = inputs([item.path for item in index.test])
    films = read_films(args.nih)
    nih_normal = inputs([f.path for f in films if f.split == "train" and not f.findings])
    with torch.no_grad():
        text = F.normalize(backbone.encode_text(backbone.tokenize(["normal", "pneumonia"])), dim=-1)

    def zero_shot(embeddings: torch.Tensor) -> float:
        return roc_auc_score(labels, (embeddings @ text.T).softmax(-1)[:, 1].numpy())

    print(f"(1) zero-shot AUC on the ZhangLab test split: {zero_shot(embed(test)):.3f}")
    for seed in range(3):
        support = inputs(draw_few_shot(index.train_normals, 64, 64, seed).support)
        shift = embed(nih_normal).mean(0) - embed(support).mean(0)
        centred = zero_shot(F.normalize(embed(test) + shift, dim=-1))
        scale = nih_normal.std(0) / (support.std(0) + 1e-6)
        standardised = zero_shot(embed((test - support.mean(0)) * scale + nih_normal.mean(0)))
        print(f"    seed {seed}: re-centred on support normals {centred:.3f}; features standardised {standardised:.3f}")

    normals = load_images(index.train_normals[200:264], preprocessing, progress=False).images
    plain = embed(_head_inputs(backbone, torch.from_numpy(normals)))
    print("(2) median cosine distance of a film's embedding")
    for name in ("sas", "cutpaste"):
        batch = validation_batch(normals, PPAD_REGIONS.pixel_masks(224), get_synthesis(name, sources=normals), 0)
        changed = embed(_head_inputs(backbone, torch.from_numpy(batch.images[len(normals) :])))
        print(f"    to the same film with a {name} anomaly: {float((1 - (plain * changed).sum(1)).median()):.3f}")
    pairs = plain @ plain.T
    print(f"    to another normal film: {float((1 - pairs[~torch.eye(len(plain), dtype=bool)]).median()):.3f}")
    val = [f for f in films if f.split == "val" and (not f.findings or "Pneumonia" in f.findings)]
    val_embed = embed(inputs([f.path for f in val]))
    sick = torch.tensor(["Pneumonia" in f.findings for f in val])
    gap = 1 - F.cosine_similarity(val_embed[sick].mean(0), val_embed[~sick].mean(0), dim=0)
    print(
        f"    NIH val: pneumonia centroid to normal centroid: {float(gap):.3f}; logit scale {float(backbone.logit_scale):.1f}"
    )

    normals = load_images(index.train_normals[:128], preprocessing, progress=False).images
    batch = validation_batch(normals, PPAD_REGIONS.pixel_masks(224), get_synthesis("sas", sources=normals), 0)
    features = _head_inputs(backbone, torch.from_numpy(batch.images)).numpy()
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    probe = LogisticRegression(C=0.1, max_iter=3000)
    auc = cross_val_score(probe, features, batch.labels, cv=4, scoring="roc_auc").mean()
    print(f"(3) logistic probe on the frozen pooled features, normals vs SAS (4-fold CV AUC): {auc:.3f}")


if __name__ == "__main__":
    main()
