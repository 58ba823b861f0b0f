"""Where a scorer comes from: a run folder (PyTorch) or an exported model (onnxruntime).

One picklable description, so that ``ppad score`` and every Ray actor build the same scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ppad.errors import FileProblem, SettingsError

if TYPE_CHECKING:  # a source is described and checked before any scoring module is imported
    from ppad.scoring.archive import Provenance, Scorer


@dataclass(frozen=True)
class ScorerSource:
    """Exactly one of ``run_dir`` and ``onnx_model``; ``threads`` applies to onnxruntime, the
    rest to a run."""

    run_dir: Path | None = None
    onnx_model: Path | None = None
    backbone: str | None = None
    checkpoint: str = "best"
    batch_size: int = 32
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        if (self.run_dir is None) == (self.onnx_model is None):
            raise SettingsError("give either --run RUN or --onnx MODEL (one of them)")
        if self.run_dir is not None and not (Path(self.run_dir) / "config.json").is_file():  # before heavy imports
            raise FileProblem(self.run_dir, "not a ppad run folder (no config.json); train one with `ppad train`")

    def build(self) -> Scorer:
        if self.onnx_model is not None:
            from ppad.export.runtime import OnnxScorer

            return OnnxScorer(self.onnx_model, self.batch_size, self.threads)
        from ppad.runs import RunFolder
        from ppad.scoring.scorer import DetectorScorer

        return DetectorScorer(
            RunFolder(self.run_dir).load_model(self.backbone, self.checkpoint, self.device), self.batch_size
        )

    def absolute(self) -> ScorerSource:
        """The same source with its paths made absolute (for workers with another working folder)."""
        backbone = self.backbone
        if backbone is not None and Path(backbone).exists():
            backbone = str(Path(backbone).absolute())
        run, onnx = (None if path is None else Path(path).absolute() for path in (self.run_dir, self.onnx_model))
        return replace(self, run_dir=run, onnx_model=onnx, backbone=backbone)

    def default_out(self) -> Path:
        if self.onnx_model is not None:
            return self.onnx_model.with_name(self.onnx_model.stem + "-scores.csv")
        return self.run_dir / "scores.csv"

    def map_producer(self) -> str:
        """What writes a call's anomaly maps, as a ``--maps`` folder's index records it."""
        return f"run {Path(self.run_dir).resolve()}, checkpoint {self.checkpoint}"

    def provenance(self, scorer: Scorer) -> Provenance:
        """What the scores CSV records, and compares before resuming."""
        from ppad.scoring.archive import Provenance
        from ppad.scoring.rows import csv_columns

        columns = csv_columns(scorer.view_names, scorer.lung_fields is not None)
        if self.onnx_model is not None:
            return Provenance.of(self.onnx_model, self.onnx_model, "onnx", columns)
        from ppad.runs import RunFolder

        run = RunFolder(self.run_dir)
        return Provenance.of(run.root, run.prompts_path(self.checkpoint), self.checkpoint, columns)
