"""ROC curves of a bench: one panel, a colour per row, a thin line per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve


def plot_roc_curves(path: Path, runs: list[tuple[str, dict]]) -> Path:
    """``runs``: (row name, evaluation document) pairs; each document's ``test_split`` lists
    every test image with its label and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 5))
    colours: dict[str, str] = {}
    for row, document in runs:
        labels = np.array([item["label"] for item in document["test_split"]])
        scores = np.array([item["score"] for item in document["test_split"]])
        fpr, tpr, _ = roc_curve(labels, scores)
        first = row not in colours
        colour = colours.setdefault(row, f"C{len(colours)}")
        axes.plot(fpr, tpr, color=colour, linewidth=1, alpha=0.8, label=row if first else None)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC, one line per seed",
    )
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
