"""Scoring an archive: paths in chunks, the next chunk decoded by worker threads while the model
scores this one, rows appended to the CSV as they are produced, and a re-run resuming after a kill.

Memory is bounded by two chunks of resized images whatever the number of files. Rows are written
in input order, one write and ``fsync`` per chunk; a kill can leave at most a torn last line,
which the next run drops before skipping every path already in the file. So the finished CSV
equals an uninterrupted run's. A sidecar ``<csv>.run.json`` records which run and prompts wrote
it; resuming into a CSV written by another run or checkpoint is refused.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from ppad.data.loading import load_images
from ppad.data.readers import ImageReadError
from ppad.data.resize import ImageResize
from ppad.errors import FileProblem
from ppad.io import read_json, write_json
from ppad.metrics import DEFAULT_THRESHOLD
from ppad.scoring.rows import ScoreReport, csv_columns, format_row, view_label

CHUNK = 256  # images decoded, resized and scored at a time
log = logging.getLogger("ppad")


class Scorer(Protocol):
    """What the archive streams films through: a trained model in PyTorch
    (:class:`~ppad.scoring.scorer.DetectorScorer`) or an exported graph in onnxruntime."""

    view_names: list[str]
    eta: float
    fusion_weight: float | None  # w of a ``<method>+knn`` score (what drove it); None when not fused
    preprocessing: ImageResize

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, S, S] resized films in [0, 1] → ([N, V] view probabilities, [N] scores)."""
        ...


@dataclass(frozen=True)
class Provenance:
    """What wrote a scores CSV: compared before appending to it."""

    run: str
    checkpoint: str
    prompts_sha256: str
    columns: list[str]

    @classmethod
    def of(cls, source: Path, weights_file: Path, checkpoint: str, columns: list[str]) -> Provenance:
        """``source``: the run folder (or the exported model); ``weights_file``: what it scores with."""
        digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
        return cls(str(Path(source).resolve()), checkpoint, digest, columns)


@dataclass
class ArchiveSummary:
    scored: int
    failures: list[ImageReadError]
    resumed: int  # rows already in the CSV from an earlier, interrupted run
    seconds: float


def read_path_list(table: Path) -> list[Path]:
    """A CSV with a ``path`` column (paths relative to the CSV's folder) as a list of files."""
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        if "path" not in (reader.fieldnames or []):
            raise FileProblem(table, "a list of films needs a header with a 'path' column")
        return [table.parent / row["path"] for row in reader if row["path"]]


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".run.json")


def _rows_already_written(out: Path, provenance: Provenance) -> set[str]:
    """Paths already in ``out`` (after dropping a torn last line); refuses another run's CSV."""
    if not out.exists():
        return set()
    sidecar = _sidecar(out)
    if not sidecar.is_file() or read_json(sidecar) != asdict(provenance):
        raise FileProblem(
            out, "exists and was not written by this run and checkpoint; choose another --out or delete it"
        )
    data = out.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(out, "r+b") as handle:
            handle.truncate(len(complete))
    return {row["path"] for row in csv.DictReader(io.StringIO(complete.decode()))}


def _append(out: Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=columns).writerows(rows)
    with open(out, "a", newline="") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def _chunks(paths: list[Path]) -> Iterator[list[Path]]:
    for start in range(0, len(paths), CHUNK):
        yield paths[start : start + CHUNK]


def chunk_rows(
    scorer: Scorer,
    chunk: list[Path | str],
    scored: list[Path],
    failures: list[ImageReadError],
    views: np.ndarray,
    scores: np.ndarray,
) -> list[dict]:
    """CSV rows of one chunk in input order: the ``scored`` paths with their ``views`` and
    ``scores``, the ``failures`` with their error."""
    report = ScoreReport(scored, scorer.view_names, views, scores, scorer.eta, fusion_weight=scorer.fusion_weight)
    by_path = {row["path"]: format_row(row) for row in report.rows()}
    by_path.update({str(f.path): {"path": str(f.path), "error": f.problem} for f in failures})
    return [by_path[str(path)] for path in chunk]


class ScoresFile:
    """The scores CSV being written: header and sidecar on creation, resumed when it exists."""

    def __init__(self, out: Path, provenance: Provenance, view_names: list[str]) -> None:
        self.out, self.columns = Path(out), csv_columns(view_names)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.done = _rows_already_written(self.out, provenance)
        if not self.out.exists():
            self.append([dict(zip(self.columns, self.columns))])  # the header
            write_json(_sidecar(self.out), asdict(provenance))

    def todo(self, paths: list[Path], missing: list[ImageReadError]) -> list[Path]:
        """Writes the ``missing`` inputs not already there; returns the paths still to score.
        Says so when it resumes: how many of these inputs an earlier run already wrote."""
        inputs = {str(path) for path in paths} | {str(f.path) for f in missing}
        if already := len(inputs & self.done):
            log.info("resuming %s: %d of %d films already scored", self.out, already, len(inputs))
        self.append([{"path": str(f.path), "error": f.problem} for f in missing if str(f.path) not in self.done])
        return [path for path in paths if str(path) not in self.done]

    def append(self, rows: list[dict]) -> None:
        _append(self.out, rows, self.columns)


def score_archive(
    scorer: Scorer,
    paths: list[Path],
    out: Path,
    provenance: Provenance,
    missing: list[ImageReadError] = (),
    progress: bool = True,
) -> ArchiveSummary:
    """Score ``paths`` into the CSV ``out`` (resuming it), ``missing`` inputs as error rows."""
    start = time.perf_counter()
    scores_file = ScoresFile(out, provenance, scorer.view_names)
    todo = scores_file.todo(paths, list(missing))
    scored, failures = 0, list(missing)
    bar = tqdm(total=len(todo), desc="scoring", unit="img", disable=not progress, smoothing=0.1)
    with ThreadPoolExecutor(1) as prefetch:
        chunks = _chunks(todo)
        upcoming = next(chunks, None)
        pending = prefetch.submit(load_images, upcoming, scorer.preprocessing, progress=False) if upcoming else None
        while pending is not None:
            current, loaded = upcoming, pending.result()
            upcoming = next(chunks, None)
            pending = prefetch.submit(load_images, upcoming, scorer.preprocessing, progress=False) if upcoming else None
            views, scores = scorer.score(loaded.images)
            scores_file.append(chunk_rows(scorer, current, loaded.paths, loaded.failures, views, scores))
            scored += len(loaded.paths)
            failures.extend(loaded.failures)
            bar.update(len(current))
    bar.close()
    return ArchiveSummary(scored, failures, len(scores_file.done), time.perf_counter() - start)


def write_scores_json(out: Path, json_path: Path, scorer: Scorer) -> int:
    """The JSON beside a finished scores CSV: the same rows (numbers as numbers) and the failures.
    Returns how many images the CSV holds scores for."""
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = [
        {
            key: float(value) if key == "score" or key.startswith("p_") else value
            for key, value in row.items()
            if key != "error"
        }
        for row in rows
        if not row["error"]
    ]
    write_json(
        json_path,
        {
            "eta": scorer.eta,
            "threshold": DEFAULT_THRESHOLD,
            "fusion_weight": scorer.fusion_weight,
            "views": [view_label(name) for name in scorer.view_names],
            "images": images,
            "unreadable": [{"path": row["path"], "error": row["error"]} for row in rows if row["error"]],
        },
    )
    return len(images)
