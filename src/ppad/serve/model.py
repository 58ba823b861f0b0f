"""The model a server holds: loaded once at start-up, warmed up, and run by one thread at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ppad.data.readers import ImageReadError, read_image_bytes
from ppad.methods.base import PromptDetector
from ppad.metrics import DEFAULT_THRESHOLD
from ppad.runs import RunFolder
from ppad.scoring.rows import WHOLE_MAP, ScoreReport, lung_field_status, view_label
from ppad.scoring.scorer import DetectorScorer, fusion_weight_of
from ppad.serve.errors import from_read_error
from ppad.serve.overlay import anomaly_map, overlay_png
from ppad.serve.uploads import Upload

if TYPE_CHECKING:
    from ppad.lungs import LungFields


class ServedModel:
    """A trained run ready to score uploads; :meth:`score` may be called from many threads."""

    def __init__(self, model: PromptDetector, run_dir: Path, config: dict, checkpoint: str) -> None:
        self.model, self.run_dir, self.config, self.checkpoint = model, run_dir, config, checkpoint
        self.threshold = DEFAULT_THRESHOLD
        self.views = [view_label(name) for name in model.view_names]
        self._scorer = DetectorScorer(model, batch_size=1)
        self._lock = threading.Lock()  # the model caches text features per call: one call at a time

    @classmethod
    def load(
        cls, run_dir: str | Path, device: str = "auto", checkpoint: str = "best", backbone: str | None = None
    ) -> ServedModel:
        """Load ``run_dir``'s model on ``device`` and run it once, so the first request is not slow."""
        folder = RunFolder(run_dir)
        model = folder.load_model(backbone, checkpoint, device)
        served = cls(model, folder.root, folder.read_config().to_dict(), checkpoint)
        size = model.preprocessing.image_size
        served._predict(np.zeros((1, size, size), dtype=np.float32), with_map=True)
        return served

    @property
    def device(self) -> torch.device:
        return self.model.device

    def describe(self) -> dict:
        """What ``GET /v1/model`` answers: the run, its config and backbone, views and threshold."""
        return {
            "run": str(self.run_dir),
            "checkpoint": self.checkpoint,
            "method": self.config["method"],
            "backbone": self.config["backbone"],
            "views": self.views,
            "threshold": self.threshold,
            "eta": self.model.config.eta,
            "fusion_weight": fusion_weight_of(self.model),
            "image_size": self.model.preprocessing.image_size,
            "device": str(self.device),
            "config": self.config,
        }

    def score(self, upload: Upload, max_pixels: int, with_map: bool = True) -> dict:
        """Decode, resize and score one upload; unreadable or too large films raise an ApiError."""
        try:
            film = read_image_bytes(upload.data, upload.filename, max_pixels)
        except ImageReadError as error:
            raise from_read_error(error, upload.filename) from None
        image = self.model.preprocessing.resize(film)[None]
        probabilities, scores, lungs, drawn = self._predict(image, with_map)
        views = probabilities[0]
        report = ScoreReport(
            [Path(upload.filename)],
            self.model.view_names,
            probabilities,
            scores,
            self.model.config.eta,
            fusion_weight=fusion_weight_of(self.model),
        )
        row = report.rows(self.threshold)[0]
        if lungs is None and drawn is not None:  # a map restricted to the lung fields where trusted
            lungs = [lung_field_status(drawn[1], WHOLE_MAP)]
        return {
            "filename": upload.filename,
            "format": upload.format,
            "width": film.shape[1],
            "height": film.shape[0],
            "score": row["score"],
            "threshold": self.threshold,
            "decision": row["prediction"],
            "top_view": row["top_view"],
            "views": dict(zip(self.views, views.tolist())),
            "lung_fields": None if lungs is None else lungs[0],
            "overlay_png": None
            if drawn is None
            else overlay_png(self.model, film, *drawn, views, row["score"], upload.filename),
        }

    def _predict(
        self, image: np.ndarray, with_map: bool
    ) -> tuple[np.ndarray, np.ndarray, list[str] | None, tuple[np.ndarray, LungFields] | None]:
        """The views' probabilities, the score, the lung-field status when the scores use it and,
        ``with_map``, the map (lung-restricted) with its lung fields."""
        with self._lock:
            views, scores = self._scorer.score(image)
            lungs = self._scorer.lung_fields
            drawn = anomaly_map(self.model, image) if with_map else None
        return views, scores, lungs, drawn
