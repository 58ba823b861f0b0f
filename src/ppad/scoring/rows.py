"""Rows of a scores file: one per image, a column per view; numpy only (shared by the PyTorch
and ONNX runtime paths)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ppad.data.readers import ImageReadError
from ppad.io import write_csv, write_json
from ppad.metrics import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from ppad.lungs.postprocess import LungFields

MEMORY_VIEW = "memory"  # the few-shot memory's column in ``knn`` and ``<method>+knn`` runs
LUNG_COLUMN = "lung_fields"  # runs scoring on each film's lung fields: were they trusted?
WHOLE_MAP = "whole film"  # what a lung-restricted map keeps where the lung fields are not trusted


def view_label(name: str) -> str:
    return name or "whole image"


def score_drivers(
    view_names: list[str], views: np.ndarray, scores: np.ndarray, fusion_weight: float | None = None
) -> list[str]:
    """What drove each score: the view with the highest abnormal probability, except that in a
    fused score ``w · prompt + (1 − w) · memory`` the part with the larger weighted contribution
    decides first — ``memory``, or the prompt view with the highest probability.

    ``fusion_weight`` is ``w`` (``None``: the score is not fused)."""
    labels = [view_label(name) for name in view_names]
    views = np.asarray(views, dtype=np.float64)
    if fusion_weight is None or view_names[-1:] != [MEMORY_VIEW] or len(view_names) < 2:
        return [labels[int(row.argmax())] for row in views]
    memory_part = (1 - fusion_weight) * views[:, -1]
    prompt_part = np.asarray(scores, dtype=np.float64) - memory_part
    top_prompt_view = views[:, :-1].argmax(axis=1)
    return [
        MEMORY_VIEW if memory >= prompt else labels[int(view)]
        for memory, prompt, view in zip(memory_part, prompt_part, top_prompt_view)
    ]


def view_column(name: str) -> str:
    return "p_" + view_label(name).replace(" ", "_")


def lung_field_status(fields: LungFields, fallback: str = "halves") -> str:
    """A film's :data:`LUNG_COLUMN`: ``trusted``, or what the views fell back to and why, the reason as
    ``ppad lungs`` reports it (``halves: one lung field found``; ``whole film: …`` for MediCLIP's set)."""
    return "trusted" if fields.trusted else f"{fallback}: {fields.reason}"


def csv_columns(view_names: list[str], lung_fields: bool = False) -> list[str]:
    """The scores CSV's header: one column per view, :data:`LUNG_COLUMN` when the scores use each
    film's lung fields, an ``error`` column for unreadable files."""
    lungs = [LUNG_COLUMN] if lung_fields else []
    return ["path", "score", "prediction", "top_view", *map(view_column, view_names), *lungs, "error"]


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
    fusion_weight: float | None = None  # w of a ``<method>+knn`` score; None when not fused
    lung_fields: Sequence[str] | None = None  # each film's lung_field_status; None: scores use no lung fields

    def rows(self, threshold: float = DEFAULT_THRESHOLD) -> list[dict]:
        rows = []
        drivers = score_drivers(self.view_names, self.view_probabilities, self.scores, self.fusion_weight)
        lungs = [None] * len(self.paths) if self.lung_fields is None else self.lung_fields
        for path, score, views, driver, status in zip(
            self.paths, self.scores, self.view_probabilities, drivers, lungs, strict=True
        ):
            row = {
                "path": str(path),
                "score": float(score),
                "prediction": "abnormal" if score > threshold else "normal",
                "top_view": driver,
            }
            row.update({view_column(name): float(p) for name, p in zip(self.view_names, views)})
            if status is not None:
                row[LUNG_COLUMN] = status
            rows.append(row)
        return rows

    def write_csv(self, path: str | Path) -> Path:
        """One row per image (views as columns, probabilities to 6 decimals); unreadable files as rows
        with their error."""
        failures = [{"path": str(failure.path), "error": failure.problem} for failure in self.failures]
        rows = [*map(format_row, self.rows()), *failures]
        return write_csv(path, rows, csv_columns(self.view_names, self.lung_fields is not None))

    def write_json(self, path: str | Path) -> Path:
        return write_json(
            path,
            {
                "eta": self.eta,
                "threshold": DEFAULT_THRESHOLD,
                "fusion_weight": self.fusion_weight,
                "views": [view_label(name) for name in self.view_names],  # as in the CSV and rows
                "images": self.rows(),
                "unreadable": [{"path": str(f.path), "error": f.problem} for f in self.failures],
            },
        )
