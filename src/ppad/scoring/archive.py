"""Scoring an archive: paths in chunks, the next chunk decoded by worker threads while the model
scores this one, rows appended to the CSV as they are produced, and a re-run resuming after a kill.

Memory is bounded by two chunks of resized images whatever the number of files. Rows are written
in input order, one write and ``fsync`` per chunk; a kill can leave at most a torn last line,
which the next run drops before skipping every path already in the file; rows with an error are
tried again. So the finished CSV equals an uninterrupted run's. A sidecar ``<csv>.run.json``
records which run and prompts wrote it, for which inputs; a CSV written by another run or
checkpoint, or for other inputs, is never appended to.
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
from ppad.io import read_json, write_csv, write_json
from ppad.metrics import DEFAULT_THRESHOLD
from ppad.scoring.rows import ScoreReport, format_row, view_label

CHUNK = 256  # images decoded, resized and scored at a time
log = logging.getLogger("ppad")


class Scorer(Protocol):
    """What the archive streams films through: a trained model in PyTorch
    (:class:`~ppad.scoring.scorer.DetectorScorer`) or an exported graph in onnxruntime."""

    view_names: list[str]
    eta: float
    fusion_weight: float | None  # w of a ``<method>+knn`` score (what drove it); None when not fused
    preprocessing: ImageResize
    #: each film's lung-field status (:func:`~ppad.scoring.rows.lung_field_status`) from the last
    #: :meth:`score` call, in order; None when the scores use no lung fields (no such column)
    lung_fields: list[str] | None

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


def inputs_digest(paths: list[Path], missing: list[ImageReadError]) -> str:
    """What identifies a call's inputs: SHA-256 of its films and missing inputs as given (sorted, so that an
    input that was missing and has appeared since still belongs to the same call)."""
    names = sorted({*map(str, paths), *(str(f.path) for f in missing)})
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _sidecar_record(provenance: Provenance, digest: str, count: int) -> dict:
    return {**asdict(provenance), "inputs": count, "inputs_sha256": digest}


def _check_call(out: Path, provenance: Provenance, digest: str) -> None:
    """``out`` may be resumed by this call: written by the same run and checkpoint, for the same inputs."""
    sidecar = _sidecar(out)
    record = read_json(sidecar) if sidecar.is_file() else {}
    if {key: record.get(key) for key in asdict(provenance)} != asdict(provenance):
        raise FileProblem(
            out, "exists and was not written by this run and checkpoint; choose another --out or delete it"
        )
    if record.get("inputs_sha256") != digest:
        raise FileProblem(
            out,
            f"holds the scores of another call ({record.get('inputs', '?')} other inputs), which only a re-run with "
            "the same inputs resumes; choose another --out or delete it",
        )


def free_scores_path(default: Path, provenance: Provenance, paths: list[Path], missing: list[ImageReadError]) -> Path:
    """The default scores CSV of a call: ``default`` unless it holds another call's scores, then ``-2``, ``-3``…
    — the first that is new or holds this very call's (unfinished) scores."""
    digest, candidate, n = inputs_digest(paths, missing), Path(default), 1
    while candidate.exists():
        try:
            _check_call(candidate, provenance, digest)
            break
        except FileProblem:
            n += 1
            candidate = default.with_name(f"{default.stem}-{n}{default.suffix}")
    return candidate


def _rows_already_written(out: Path) -> tuple[list[dict], int]:
    """The rows of ``out`` (a torn last line dropped) and how many carried an error: those are dropped
    from the file too, so that this call tries their inputs again."""
    data = out.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    rows = list(csv.DictReader(io.StringIO(complete.decode())))
    kept = [row for row in rows if not row.get("error")]
    if len(kept) != len(rows):
        write_csv(out, kept, list(rows[0]))
    elif len(complete) != len(data):
        with open(out, "r+b") as handle:
            handle.truncate(len(complete))
    return kept, len(rows) - len(kept)


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
    lungs: list[str] | None = None,
) -> list[dict]:
    """CSV rows of one chunk in input order: the ``scored`` paths with their ``views``, ``scores``
    and ``lungs`` (lung-field status; default: the scorer's, of its last call), the ``failures``
    with their error."""
    lungs = scorer.lung_fields if lungs is None else lungs
    report = ScoreReport(
        scored, scorer.view_names, views, scores, scorer.eta, fusion_weight=scorer.fusion_weight, lung_fields=lungs
    )
    by_path = {row["path"]: format_row(row) for row in report.rows()}
    by_path.update({str(f.path): {"path": str(f.path), "error": f.problem} for f in failures})
    return [by_path[str(path)] for path in chunk]


class ScoresFile:
    """The scores CSV of one call (its ``paths`` and ``missing`` inputs): header and sidecar on creation;
    resumed when it exists and the sidecar names the same run, checkpoint and inputs (refused otherwise).
    Rows with an error are tried again on resume; :meth:`finish` puts a resumed file back in input order."""

    def __init__(self, out: Path, provenance: Provenance, paths: list[Path], missing: list[ImageReadError]) -> None:
        self.out, self.columns = Path(out), provenance.columns
        self.paths, self.missing = list(paths), list(missing)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        digest = inputs_digest(self.paths, self.missing)
        self.resumed = self.out.exists()
        self.done: set[str] = set()
        if self.resumed:
            _check_call(self.out, provenance, digest)
            rows, retried = _rows_already_written(self.out)
            self.done = {row["path"] for row in rows}
            if retried:
                log.info("trying again %d inputs that could not be read before", retried)
        else:
            self.append([dict(zip(self.columns, self.columns))])  # the header
            write_json(_sidecar(self.out), _sidecar_record(provenance, digest, len(self.paths) + len(self.missing)))

    def todo(self) -> list[Path]:
        """Writes the ``missing`` inputs; returns the paths still to score. Says so when it resumes:
        how many of these inputs an earlier run already wrote."""
        if self.done:
            log.info("resuming %s: %d of %d films already scored", self.out, len(self.done), len(self.paths))
        self.append([{"path": str(f.path), "error": f.problem} for f in self.missing])
        return [path for path in self.paths if str(path) not in self.done]

    def append(self, rows: list[dict]) -> None:
        _append(self.out, rows, self.columns)

    def finish(self) -> None:
        """A resumed file in the order an uninterrupted call writes: missing inputs first, then the films."""
        if not self.resumed:
            return
        with open(self.out, newline="") as handle:
            rows = list(csv.DictReader(handle))
        order = {path: i for i, path in enumerate([*(str(f.path) for f in self.missing), *map(str, self.paths)])}
        ordered = sorted(rows, key=lambda row: order.get(row["path"], len(order)))
        if ordered != rows:
            write_csv(self.out, ordered, self.columns)


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
    scores_file = ScoresFile(out, provenance, paths, list(missing))
    todo = scores_file.todo()
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
    scores_file.finish()
    return ArchiveSummary(scored, failures, len(scores_file.done), time.perf_counter() - start)


def write_scores_json(out: Path, json_path: Path, scorer: Scorer, files: dict[str, dict] | None = None) -> int:
    """The JSON beside a finished scores CSV: the same rows (numbers as numbers), each with the output
    ``files`` written for its path if any (e.g. its map and overlay), and the failures.
    Returns how many images the CSV holds scores for."""
    files = files or {}
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = [
        {
            key: float(value) if key == "score" or key.startswith("p_") else value
            for key, value in row.items()
            if key != "error"
        }
        | files.get(row["path"], {})
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
