"""How much anomaly signal the random-weight `tiny` backbone's image features carry.

Run: python benchmarks/tiny_backbone_probe.py
A logistic-regression probe (4-fold cross-validated AUC) on the frozen tiny features, for
(a) held-out demo normals vs the same images with SAS anomalies (what validation uses) and
(b) the demo's test split (additive textured opacities). Shows why the demo's numbers say
nothing about detection quality.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from ppad.backbones import Preprocessing, load_backbone
from ppad.data import discover, load_images, write_demo_dataset
from ppad.data.batches import validation_batch
from ppad.regions import PPAD_REGIONS
from ppad.synthesis import get_synthesis


def probe_auc(backbone, preprocessing: Preprocessing, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        features = F.normalize(backbone.encode_image(preprocessing.normalize(torch.from_numpy(images))), dim=-1).numpy()
    features = (features - features.mean(0)) / features.std(0)
    probe = LogisticRegression(C=1.0, max_iter=3000)
    return float(cross_val_score(probe, features, labels, cv=4, scoring="roc_auc").mean())


def main() -> None:
    backbone = load_backbone("tiny")
    preprocessing = backbone.architecture.preprocessing
    with tempfile.TemporaryDirectory() as folder:
        index = discover(write_demo_dataset(Path(folder), n_train=96, n_test_normal=40, n_test_abnormal=40, seed=0))
        normals = load_images(index.train_normals, preprocessing, progress=False).images
        sas = validation_batch(normals, PPAD_REGIONS.pixel_masks(224), get_synthesis("sas"), seed=0)
        test = load_images([item.path for item in index.test], preprocessing, progress=False)
        test_labels = np.array([item.label for item in index.test])
    print(f"probe AUC, normals vs SAS anomalies:      {probe_auc(backbone, preprocessing, sas.images, sas.labels):.2f}")
    print(
        f"probe AUC, demo test (additive opacities): {probe_auc(backbone, preprocessing, test.images, test_labels):.2f}"
    )


if __name__ == "__main__":
    main()
