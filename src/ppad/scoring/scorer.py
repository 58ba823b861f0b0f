"""Score images with a trained model: five batched views per image, the paper's rule on top."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ppad.data.loading import load_images
from ppad.data.readers import ImageReadError
from ppad.io import atomic_write, write_json
from ppad.methods.base import PromptDetector
from ppad.metrics import DEFAULT_THRESHOLD

READ_CHUNK = 256  # images read and resized at a time, bounding memory on large folders


def view_label(name: str) -> str:
    return name or "whole image"


def view_column(name: str) -> str:
    return "p_" + view_label(name).replace(" ", "_")


def csv_columns(view_names: list[str]) -> list[str]:
    """The scores CSV's header: one column per view, an ``error`` column for unreadable files."""
    return ["path", "score", "prediction", "top_view", *map(view_column, view_names), "error"]


def format_row(row: dict) -> dict:
    """A row as written to CSV: every probability to 6 decimals."""
    return {key: f"{value:.6f}" if isinstance(value, float) else value for key, value in row.items()}


def predict_views(model: PromptDetector, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """[N, S, S] images in [0, 1] → [N, R] abnormal probability per view (text features cached)."""
    results = [np.zeros((0, len(model.view_names)), dtype=np.float32)]
    with model.inference():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(model.device)
            results.append(model.view_probabilities(model.preprocessing.normalize(batch)).float().cpu().numpy())
    return np.concatenate(results)


@dataclass
class ScoreReport:
    """Per-image scores, per-view probabilities and the files that could not be read."""

    paths: list[Path]
    view_names: list[str]
    view_probabilities: np.ndarray
    scores: np.ndarray
    eta: float
    failures: list[ImageReadError] = field(default_factory=list)

    def rows(self, threshold: float = DEFAULT_THRESHOLD) -> list[dict]:
        rows = []
        for path, score, views in zip(self.paths, self.scores, self.view_probabilities):
            row = {
                "path": str(path),
                "score": float(score),
                "prediction": "abnormal" if score > threshold else "normal",
                "top_view": view_label(self.view_names[int(views.argmax())]),
            }
            row.update({view_column(name): float(p) for name, p in zip(self.view_names, views)})
            rows.append(row)
        return rows

    def write_csv(self, path: str | Path) -> Path:
        """One row per image (views as columns, probabilities to 6 decimals); unreadable files as rows
        with their error."""
        columns = csv_columns(self.view_names)

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                for row in self.rows():
                    writer.writerow(format_row(row))
                for failure in self.failures:
                    writer.writerow({"path": str(failure.path), "error": failure.problem})

        return atomic_write(path, write)

    def write_json(self, path: str | Path) -> Path:
        return write_json(
            path,
            {
                "eta": self.eta,
                "threshold": DEFAULT_THRESHOLD,
                "views": [view_label(name) for name in self.view_names],  # as in the CSV and rows
                "images": self.rows(),
                "unreadable": [{"path": str(f.path), "error": f.problem} for f in self.failures],
            },
        )


def score_files(model: PromptDetector, paths: list[Path], batch_size: int = 32, progress: bool = True) -> ScoreReport:
    """Score files in order; unreadable ones are collected in ``failures`` and skipped."""
    kept, probabilities, failures = [], [np.zeros((0, len(model.view_names)), dtype=np.float32)], []
    chunks = range(0, len(paths), READ_CHUNK)
    for start in tqdm(chunks, desc="scoring", unit="chunk", disable=not progress or len(chunks) < 2):
        loaded = load_images(paths[start : start + READ_CHUNK], model.preprocessing, progress=progress)
        kept.extend(loaded.paths)
        failures.extend(loaded.failures)
        probabilities.append(predict_views(model, loaded.images, batch_size))
    views = np.concatenate(probabilities)
    return ScoreReport(
        paths=kept,
        view_names=model.view_names,
        view_probabilities=views,
        scores=model.aggregate(views),
        eta=model.config.eta,
        failures=failures,
    )
