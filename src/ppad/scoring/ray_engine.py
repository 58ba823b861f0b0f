"""``ppad score --engine ray``: the same scoring as a Ray Data pipeline, for archives that outgrow
one machine.

Films are read and resized by Ray tasks; the model lives in a pool of actors (one model each,
CPU or GPU); the driver receives results in input order and appends them to the same CSV the
single-process engine writes, so output, provenance sidecar and resume are identical. Without an
address a local Ray instance is started (and stopped); with one (``auto``, ``ray://head:10001``)
the job joins that cluster, whose nodes must have ppad installed and see the run folder (or
exported model) and the films at the same paths.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from ppad.data.readers import ImageReadError, read_image
from ppad.data.resize import ImageResize
from ppad.errors import SettingsError
from ppad.scoring.archive import CHUNK, ArchiveSummary, Scorer, ScoresFile, chunk_rows
from ppad.scoring.source import ScorerSource

READ_BATCH = 16  # films per reading task
READ_CPUS = 0.5  # a reader is lighter than a scoring actor; distinct resources also keep them separate tasks


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise SettingsError("--engine ray needs Ray: pip install 'ppad[ray]'") from None
    return ray


def read_films(batch: dict[str, np.ndarray], resize: ImageResize) -> dict[str, np.ndarray]:
    """Ray task: decode and resize each path; an unreadable film gets a blank image and its error."""
    size = resize.image_size
    images = np.zeros((len(batch["path"]), size, size), dtype=np.float32)
    errors = []
    for index, path in enumerate(batch["path"]):
        try:
            images[index] = resize.resize(read_image(path))
            errors.append("")
        except ImageReadError as error:
            errors.append(error.problem)
    return {"path": batch["path"], "image": images, "error": np.array(errors, dtype=object)}


class ScoringActor:
    """One model per actor, built once from the same source as the driver's."""

    def __init__(self, source: ScorerSource) -> None:
        self.scorer = source.build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        readable = np.array([not error for error in batch["error"]], dtype=bool)
        views = np.full((len(readable), len(self.scorer.view_names)), np.nan, dtype=np.float64)
        scores = np.full(len(readable), np.nan, dtype=np.float64)
        if readable.any():
            views[readable], scores[readable] = self.scorer.score(batch["image"][readable])
        return {"path": batch["path"], "error": batch["error"], "views": views, "score": scores}


def score_with_ray(
    source: ScorerSource,
    scorer: Scorer,
    paths: list[Path],
    out: Path,
    missing: list[ImageReadError] = (),
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    progress: bool = True,
) -> ArchiveSummary:
    """Score ``paths`` into ``out`` as :func:`~ppad.scoring.archive.score_archive` does, on Ray.
    ``scorer`` (built by the driver from ``source``) names the columns and the resize."""
    ray = require_ray()
    start = time.perf_counter()
    scores_file = ScoresFile(out, source.provenance(scorer), scorer.view_names)
    todo = scores_file.todo(paths, list(missing))
    failures = list(missing)
    scored = 0
    started_here = not ray.is_initialized()  # a local instance is stopped, a cluster connection closed
    if started_here:
        local = {"num_cpus": max(os.cpu_count() or 1, workers + 1)} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR", **local)
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = progress
        if todo:
            films = ray.data.from_items([{"path": str(path)} for path in todo])
            films = films.map_batches(
                read_films, fn_kwargs={"resize": scorer.preprocessing}, batch_size=READ_BATCH, num_cpus=READ_CPUS
            )
            results = films.map_batches(
                ScoringActor,
                fn_constructor_kwargs={"source": source},
                batch_size=source.batch_size,
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=0 if gpus_per_worker else 1,
                num_gpus=gpus_per_worker,
            )
            for batch in results.iter_batches(batch_size=CHUNK, batch_format="numpy"):
                chunk = [str(path) for path in batch["path"]]
                readable = np.array([not error for error in batch["error"]], dtype=bool)
                done = [Path(p) for p, ok in zip(chunk, readable) if ok]
                unreadable = [ImageReadError(Path(p), e) for p, e, ok in zip(chunk, batch["error"], readable) if not ok]
                views, scores = batch["views"][readable], batch["score"][readable]
                scores_file.append(chunk_rows(scorer, chunk, done, unreadable, views, scores))
                scored += len(done)
                failures.extend(unreadable)
    finally:
        if started_here:
            ray.shutdown()
    return ArchiveSummary(scored, failures, len(scores_file.done), time.perf_counter() - start)
