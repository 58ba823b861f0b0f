"""Why cxr-lite's prompt methods do not transfer to ZhangLab: the numbers in the README's diagnosis.

Run: python benchmarks/transfer_diagnosis.py [--backbone cxr-lite] [--zhanglab ../shared/data/zhanglab]
[--nih ../shared/data/nih-cxr8]

Prints (1) zero-shot AUC on the ZhangLab test split, plain and re-centred on 64 support normals
(a test-set diagnosis, never used to choose anything), (2) how far SAS and CutPaste move a film's
embedding compared with the spread of normal films and NIH's pneumonia/normal gap, and (3) a
logistic probe on the frozen pooled features for SAS, (4) the ceiling of the frozen features with
labels (a logistic probe 5-fold cross-validated on the ZhangLab test split: a diagnosis of the
features, not a method) and (5) which synthetic anomaly points the way real ones lie.

(5): a prompt trained on normals against synthetic anomalies can at best learn the direction that
separates them. For each task this takes the mean shift from 64 normals to the same normals with
an anomaly (drawn as in validation: PPAD's regions) and scores real films by their projection on
it, in the memory's features (what ``knn`` reads) and the joint embedding (what prompts read):
on NIH ``val`` (adults, 93 normal / 85 pneumonia; shift from NIH ``train`` normals), a split
allowed for selection, and on the ZhangLab test split (shift from 64 ZhangLab train normals), a
diagnosis never used to choose anything.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict, cross_val_score

from ppad.backbones import DualTowerBackbone, load_backbone
from ppad.data import discover, draw_few_shot, load_images
from ppad.data.batches import validation_batch
from ppad.pretraining import read_films
from ppad.pretraining.data import _head_inputs
from ppad.regions import PPAD_REGIONS
from ppad.synthesis import get_synthesis

SHIFT_TASKS = ("sas", "sas-reference", "fpi", "pii", "cutpaste", "anatpaste", "gaussian-intensity", "mediclip")
SHOTS = 64


def spaces(backbone: DualTowerBackbone, images: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
    """[N, S, S] images in [0, 1] → the memory features and the unit-norm joint embedding."""
    normalize = backbone.architecture.preprocessing.normalize
    memory, joint = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalize(torch.from_numpy(images[start : start + batch_size]))
            memory.append(backbone.memory_features(x))
            joint.append(F.normalize(backbone.encode_image(x), dim=-1))
    return {"memory": torch.cat(memory).numpy(), "embedding": torch.cat(joint).numpy()}


def shift_auc(normal: dict, synthetic: dict, real: dict, labels: np.ndarray, space: str) -> float:
    """AUC of real films projected on the normal → synthetic mean shift."""
    direction = synthetic[space].mean(0) - normal[space].mean(0)
    return roc_auc_score(labels, real[space] @ direction)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zhanglab", default="../shared/data/zhanglab")
    parser.add_argument("--nih", default="../shared/data/nih-cxr8")
    parser.add_argument("--backbone", default="cxr-lite", help="a dual-tower backbone, e.g. cxr-lite-1")
    args = parser.parse_args()
    backbone = load_backbone(args.backbone)
    preprocessing = backbone.architecture.preprocessing

    def read(paths) -> np.ndarray:
        return load_images(list(paths), preprocessing, progress=False).images

    def inputs(paths) -> torch.Tensor:
        return _head_inputs(backbone, torch.from_numpy(read(paths)))

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

    nih_labels = sick.numpy()
    nih_normals = read([f.path for f in films if f.split == "train" and not f.findings][:SHOTS])
    nih_real = spaces(backbone, read(f.path for f in val))
    zhang_normals = read(index.train_normals[:SHOTS])
    zhang_real = spaces(backbone, read(item.path for item in index.test))
    print("(4) supervised ceiling of the frozen features (5-fold logistic probe on the ZhangLab test split):")
    for space, features in zhang_real.items():
        probe = LogisticRegression(max_iter=3000)
        scores = cross_val_predict(probe, features, labels, cv=5, method="predict_proba")[:, 1]
        print(f"    {space}: {roc_auc_score(labels, scores):.3f}")

    print("(5) AUC of real films projected on the normal → synthetic shift (NIH val: selectable; ZhangLab: diagnosis)")
    print(f"    {'task':20s} {'NIH memory':>11s} {'NIH embed':>10s} {'Zhang memory':>13s} {'Zhang embed':>12s}")
    masks = PPAD_REGIONS.pixel_masks(preprocessing.image_size)
    sets = [
        (normals, spaces(backbone, normals), real, truth)
        for normals, real, truth in (
            (nih_normals, nih_real, nih_labels),
            (zhang_normals, zhang_real, labels),
        )
    ]
    for name in SHIFT_TASKS:
        row = []
        for normals, plain, real, truth in sets:
            batch = validation_batch(normals, masks, get_synthesis(name, sources=normals), seed=0)
            synthetic = spaces(backbone, batch.images[len(normals) :])
            row += [shift_auc(plain, synthetic, real, truth, space) for space in ("memory", "embedding")]
        print(f"    {name:20s} {row[0]:11.3f} {row[1]:10.3f} {row[2]:13.3f} {row[3]:12.3f}")


if __name__ == "__main__":
    main()
