"""Scoring with an exported model: onnxruntime, numpy and Pillow only (no PyTorch).

The graph takes a batch of resized films, ``[B, S, S]`` float32 in ppad's one intensity range
[0, 1]; it normalises them itself and returns every view's abnormal probability and the final
score. The sidecar ``<model>.json`` says how to resize (``ImageResize``) and names the views.
A model on each film's lung fields also takes their region masks, ``[B, R, S, S]``: the lung
segmenter exported beside it (``<model>.lungs.onnx``) draws them, post-processed in NumPy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppad.data.resize import ImageResize
from ppad.errors import FileProblem, PpadError, SettingsError
from ppad.io import read_json
from ppad.regions import RegionSet, get_region_set

FORMAT = "ppad-onnx"
FORMAT_VERSION = 1
INPUT = "images"
MASKS_INPUT = "region_masks"
OUTPUTS = ("view_probabilities", "score")
LUNG_OUTPUT = "lung_probability"


def require(module: str):
    """An optional dependency of the ONNX path, or a one-line error saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SettingsError(f"{module} is not installed: pip install 'ppad[onnx]'") from None


def sidecar_path(model_path: str | Path) -> Path:
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def segmenter_path(model_path: str | Path) -> Path:
    """Where the lung segmenter of a lung-field model lies: beside it, ``<model>.lungs.onnx``."""
    path = Path(model_path)
    return path.with_name(path.name.removesuffix(".onnx") + ".lungs.onnx")


@dataclass(frozen=True)
class ExportedModel:
    """What scoring needs from the sidecar of an exported graph."""

    view_names: list[str]
    eta: float
    fusion_weight: float | None  # w of a ``<method>+knn`` score; None when not fused
    preprocessing: ImageResize
    regions: RegionSet | None = None  # lung-field regions whose masks the graph takes; None: fixed

    @classmethod
    def read(cls, model_path: str | Path) -> ExportedModel:
        sidecar = sidecar_path(model_path)
        if not sidecar.is_file():
            raise FileProblem(sidecar, f"missing: {Path(model_path).name} was not written by `ppad export`")
        try:
            data = read_json(sidecar)
        except (OSError, ValueError) as error:
            raise FileProblem(sidecar, f"unreadable ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FileProblem(sidecar, f"not a {FORMAT} description")
        try:
            if int(data.get("format_version", 0)) > FORMAT_VERSION:
                raise FileProblem(sidecar, f"written by a newer ppad (format {data['format_version']}); upgrade ppad")
            resize = data["preprocessing"]
            regions = data.get("regions") or {}
            return cls(
                view_names=[str(name) for name in data["view_names"]],
                eta=float(data["eta"]),
                fusion_weight=None if data.get("fusion_weight") is None else float(data["fusion_weight"]),
                preprocessing=ImageResize(int(resize["image_size"]), str(resize["resize_mode"])),
                regions=get_region_set(regions["set"], regions["sides"]) if "segmenter" in regions else None,
            )
        except (KeyError, TypeError, ValueError, PpadError) as error:
            raise FileProblem(sidecar, f"missing or malformed field ({error})") from None


class OnnxScorer:
    """An exported model in onnxruntime, behind the same surface as the PyTorch scorer."""

    def __init__(self, model_path: str | Path, batch_size: int = 32, threads: int | None = None) -> None:
        """``threads``: onnxruntime's intra-op threads (default: every core; 1 per Ray actor)."""
        onnxruntime = require("onnxruntime")
        self.path = Path(model_path)
        if not self.path.is_file():
            raise FileProblem(self.path, "no such ONNX model")
        self.exported = ExportedModel.read(self.path)
        self.view_names, self.eta = self.exported.view_names, self.exported.eta
        self.fusion_weight = self.exported.fusion_weight
        self.preprocessing = self.exported.preprocessing
        self.batch_size = batch_size
        self.session = _session(onnxruntime, self.path, threads)
        self.segmenter = None
        #: each film's lung_field_status from the last :meth:`score`; None when the graph takes no lung fields
        self.lung_fields: list[str] | None = None
        if self.exported.regions is not None:
            self.lung_fields = []
            lungs = segmenter_path(self.path)
            if not lungs.is_file():
                raise FileProblem(lungs, f"missing: {self.path.name} scores on lung fields drawn by this segmenter")
            self.segmenter = _session(onnxruntime, lungs, threads)

    def inputs(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], list[str]]:
        """The graph's inputs for a batch of films (the films, and their region masks when it takes
        them) and each film's lung_field_status (none when it takes no masks)."""
        if self.segmenter is None:
            return {INPUT: batch}, []
        from ppad.lungs.postprocess import lung_fields
        from ppad.regions.anatomy import film_region_masks
        from ppad.scoring.rows import lung_field_status

        (probabilities,) = self.segmenter.run([LUNG_OUTPUT], {INPUT: batch})
        fields = [lung_fields(probability) for probability in probabilities]
        masks = film_region_masks(self.exported.regions, fields).astype(np.float32)
        return {INPUT: batch, MASKS_INPUT: masks}, [
            lung_field_status(film, self.exported.regions.fallback) for film in fields
        ]

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, S, S] resized films in [0, 1] → ([N, V] view probabilities, [N] scores); the films'
        lung-field status in :attr:`lung_fields` when the graph takes their masks."""
        views = [np.zeros((0, len(self.view_names)), dtype=np.float32)]
        scores = [np.zeros(0, dtype=np.float32)]
        lungs: list[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = np.ascontiguousarray(images[start : start + self.batch_size], dtype=np.float32)
            inputs, statuses = self.inputs(batch)
            batch_views, batch_scores = self.session.run(list(OUTPUTS), inputs)
            views.append(batch_views)
            scores.append(batch_scores)
            lungs.extend(statuses)
        if self.lung_fields is not None:
            self.lung_fields = lungs
        return np.concatenate(views), np.concatenate(scores).astype(np.float64)


def _session(onnxruntime, path: Path, threads: int | None):
    """An onnxruntime session on the CPU (``threads``: intra-op threads, 0 = its default)."""
    try:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped errors for bad files
        raise FileProblem(path, f"onnxruntime cannot load it: {str(error).splitlines()[0]}") from None
