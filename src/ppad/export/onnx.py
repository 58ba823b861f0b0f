"""Export a trained model to ONNX and prove the graph scores as PyTorch does.

The graph is one function of resized films (``[B, S, S]`` in [0, 1], any batch size): the
normalisation, every view (the image prompt folded in as a constant), the text features
(constants: prompts do not change after training) and the method's final score (PPAD's η rule,
the memory fusion) are inside it. After writing, the export scores real films (or, without
them, random images) at batch sizes 1 and 8 in both runtimes and refuses a graph whose
probabilities differ by more than :data:`PARITY_TOLERANCE` or whose decisions differ.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ppad import __version__
from ppad.data.loading import load_images
from ppad.errors import PpadError
from ppad.export.runtime import (
    FORMAT,
    FORMAT_VERSION,
    INPUT,
    LUNG_OUTPUT,
    MASKS_INPUT,
    OUTPUTS,
    OnnxScorer,
    require,
    segmenter_path,
    sidecar_path,
)
from ppad.io import write_json
from ppad.methods.base import PromptDetector
from ppad.metrics import DEFAULT_THRESHOLD
from ppad.runs import RunFolder
from ppad.scoring.scorer import DetectorScorer, fusion_weight_of

PARITY_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 8)
OPSET = 18
EXPORTER_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")


class ExportError(PpadError):
    """A model that cannot be exported, or whose exported graph does not score as PyTorch does."""


class ScoringGraph(nn.Module):
    """A trained model as one function: resized films (and, for per-film regions, their region
    masks) → (view probabilities, final score)."""

    def __init__(self, model: PromptDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        views = self.model.view_probabilities(self.model.preprocessing.normalize(images), masks)
        return views, self.model.score_views(views)


@dataclass(frozen=True)
class Parity:
    """Largest differences between onnxruntime and PyTorch on the check films, per batch size."""

    films: int
    real_films: bool
    max_probability_difference: dict[int, float]
    max_score_difference: dict[int, float]
    same_decisions: bool

    @property
    def worst(self) -> float:
        """The largest difference; infinite if either runtime produced a NaN."""
        values = np.array([*self.max_probability_difference.values(), *self.max_score_difference.values()])
        return float(values.max()) if np.isfinite(values).all() else float("inf")

    @property
    def holds(self) -> bool:
        return self.same_decisions and self.worst <= PARITY_TOLERANCE

    def to_dict(self) -> dict:
        return {
            "tolerance": PARITY_TOLERANCE,
            "films": self.films,
            "real_films": self.real_films,
            "max_probability_difference": {str(b): d for b, d in self.max_probability_difference.items()},
            "max_score_difference": {str(b): d for b, d in self.max_score_difference.items()},
            "same_decisions": self.same_decisions,
        }


def export_onnx(
    model: PromptDetector, method: str, out: Path, source: dict, check_images: np.ndarray | None = None
) -> Parity:
    """Write ``out`` (+ ``out.json``) once parity holds on ``check_images`` ([N, S, S] in [0, 1],
    topped up with random images to the largest parity batch). Raises :class:`ExportError` if the
    method cannot be exported or the graph does not match PyTorch; then nothing at ``out`` changes."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module)
    model = model.eval().cpu()
    size = model.preprocessing.image_size
    real = check_images is not None and len(check_images) > 0
    filler = np.random.default_rng(0).random((max(PARITY_BATCHES), size, size), dtype=np.float32)
    check_images = np.concatenate([check_images, filler[len(check_images) :]]) if real else filler
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial.onnx")  # an earlier export at ``out`` survives a failure
    staged = [staging, sidecar_path(staging)]
    try:
        _write_graph(model, staging)
        if model.scores_on_film_lungs:
            _write_segmenter(model, segmenter_path(staging))
            staged.append(segmenter_path(staging))
        sidecar = _describe(model, method, source, segmenter_path(out).name)
        write_json(sidecar_path(staging), sidecar)
        parity = check_parity(model, staging, check_images, real)
        if not parity.holds:
            raise ExportError(f"the exported {method} graph does not score as PyTorch does: {parity.to_dict()}")
        write_json(sidecar_path(staging), {**sidecar, "parity": parity.to_dict()})
        if model.scores_on_film_lungs:
            os.replace(segmenter_path(staging), segmenter_path(out))
        os.replace(staging, out)
        os.replace(sidecar_path(staging), sidecar_path(out))
    finally:
        for path in staged:
            path.unlink(missing_ok=True)
    return parity


def _write_graph(model: PromptDetector, out: Path) -> None:
    size = model.preprocessing.image_size
    inputs, names, shapes = (torch.rand(2, size, size),), [INPUT], {"images": {0: torch.export.Dim.DYNAMIC}}
    if model.scores_on_film_lungs:
        inputs += (torch.ones(2, len(model.regions), size, size),)
        names.append(MASKS_INPUT)
        shapes["masks"] = {0: torch.export.Dim.DYNAMIC}
    with model.inference():
        _export(ScoringGraph(model).eval(), inputs, out, names, list(OUTPUTS), shapes, type(model).__name__)


def _write_segmenter(model: PromptDetector, out: Path) -> None:
    """The lung-field network as a function of the model's own input frame: films → probabilities."""
    size = model.preprocessing.image_size
    frame = model.film_lungs.segmenter.frame_probability
    with torch.inference_mode():
        shapes = {"images": {0: torch.export.Dim.DYNAMIC}}
        _export(frame, (torch.rand(2, size, size),), out, [INPUT], [LUNG_OUTPUT], shapes, "the lung segmenter")


def _export(
    module: nn.Module, inputs: tuple, out: Path, input_names: list, output_names: list, shapes: dict, what: str
) -> None:
    try:
        with _quiet_exporter():
            torch.onnx.export(
                module,
                inputs,
                str(out),
                dynamo=True,
                external_data=False,
                opset_version=OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=shapes,
                verbose=False,
            )
    except Exception as error:  # the exporter's many error types: say which model, keep one line
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{what} cannot be exported to ONNX: {reason}") from error


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's graph passes log every step at INFO (hundreds of lines under ppad's CLI logging)."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _describe(model: PromptDetector, method: str, source: dict, segmenter_file: str) -> dict:
    preprocessing = model.preprocessing
    regions = {"set": model.regions.name, "sides": model.config.region_sides, "names": model.regions.names}
    if model.scores_on_film_lungs:
        segmenter = model.film_lungs.segmenter
        regions["segmenter"] = {"onnx": segmenter_file, "weights_sha256": segmenter.fingerprint}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ppad_version": __version__,
        "method": method,
        "view_names": model.view_names,
        "eta": model.config.eta,
        "fusion_weight": fusion_weight_of(model),
        "threshold": DEFAULT_THRESHOLD,
        "input": {
            "name": INPUT,
            "shape": ["batch", preprocessing.image_size, preprocessing.image_size],
            "range": [0.0, 1.0],
            "dtype": "float32",
        },
        "outputs": {OUTPUTS[0]: ["batch", len(model.view_names)], OUTPUTS[1]: ["batch"]},
        "regions": regions,
        "preprocessing": {
            "image_size": preprocessing.image_size,
            "resize_mode": preprocessing.resize_mode,
            "normalisation_in_graph": {"mean": preprocessing.mean, "std": preprocessing.std},
        },
        "source": source,
    }


def check_parity(model: PromptDetector, path: Path, images: np.ndarray, real_films: bool) -> Parity:
    """Score ``images`` with PyTorch and with onnxruntime at every batch size in ``PARITY_BATCHES``.
    Decisions must match except for scores within the tolerance of the threshold (ties)."""
    reference_views, reference_scores = DetectorScorer(model, batch_size=max(PARITY_BATCHES)).score(images)
    probability, score, same = {}, {}, True
    tie = np.abs(reference_scores - DEFAULT_THRESHOLD) <= PARITY_TOLERANCE  # a tie at this precision
    for batch_size in PARITY_BATCHES:
        views, scores = OnnxScorer(path, batch_size=batch_size).score(images)
        probability[batch_size] = float(np.abs(views - reference_views).max())
        score[batch_size] = float(np.abs(scores - reference_scores).max())
        same &= bool(np.all(((scores > DEFAULT_THRESHOLD) == (reference_scores > DEFAULT_THRESHOLD)) | tie))
    return Parity(len(images), real_films, probability, score, same)


def export_run(
    run_dir: Path, out: Path, checkpoint: str = "best", backbone: str | None = None, check_films: int = 8
) -> Parity:
    """Export a run folder's model; parity is checked on up to ``check_films`` of the films the
    run itself read (its support and validation normals), random images if none is readable."""
    run = RunFolder(run_dir)
    model = run.load_model(backbone, checkpoint, "cpu")
    manifest = run.read_manifest()
    films = sorted(manifest.seen_files())[:check_films]
    check = load_images(films, model.preprocessing, progress=False).images
    source = {
        "run": str(run.root.resolve()),
        "checkpoint": checkpoint,
        "prompts_sha256": hashlib.sha256(run.prompts_path(checkpoint).read_bytes()).hexdigest(),
        "backbone": model.backbone.source,
        "backbone_fingerprint": model.backbone.fingerprint,
        "seed": manifest.seed,
    }
    return export_onnx(model, manifest.identity.method, out, source, check)
