"""ROC curves of a bench: one panel, a colour per row, a thin line per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from ppad.metrics.plots import pyplot, save_figure, style_roc_axes


def plot_roc_curves(path: Path, runs: list[tuple[str, dict]]) -> Path:
    """``runs``: (row name, evaluation document) pairs; each document's ``test_split`` lists
    every test image with its label and score."""
    figure, axes = pyplot().subplots(figsize=(5.5, 5))
    colours: dict[str, str] = {}
    for row, document in runs:
        labels = np.array([item["label"] for item in document["test_split"]])
        scores = np.array([item["score"] for item in document["test_split"]])
        fpr, tpr, _ = roc_curve(labels, scores)
        first = row not in colours
        colour = colours.setdefault(row, f"C{len(colours)}")
        axes.plot(fpr, tpr, color=colour, linewidth=1, alpha=0.8, label=row if first else None)
    style_roc_axes(axes, "ROC, one line per seed")
    axes.legend(loc="lower right", fontsize=8)
    return save_figure(figure, path)
