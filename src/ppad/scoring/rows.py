"""Rows of a scores file: one per image, a column per view; numpy only (shared by the PyTorch
and ONNX runtime paths)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppad.data.readers import ImageReadError
from ppad.io import atomic_write, write_json
from ppad.metrics import DEFAULT_THRESHOLD


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
