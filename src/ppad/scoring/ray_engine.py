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
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ppad.data.readers import ImageReadError, read_image
from ppad.data.resize import ImageResize
from ppad.errors import PpadError, SettingsError
from ppad.scoring.archive import CHUNK, ArchiveSummary, Scorer, ScoresFile, chunk_rows
from ppad.scoring.rows import LUNG_COLUMN
from ppad.scoring.source import ScorerSource

READ_BATCH = 16  # films per reading task
READ_CPUS = 0.5  # a reader is lighter than a scoring actor; distinct resources also keep them separate tasks
ACTOR_START_TIMEOUT = 600  # seconds to wait for the actor pool, then fail instead of hanging


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise SettingsError("--engine ray needs Ray: pip install 'ppad[ray]'") from None
    return ray


def read_films(batch: dict[str, np.ndarray], resize: ImageResize) -> dict[str, np.ndarray]:
    """Ray task: decode and resize each ``file``; an unreadable film gets a blank image and its error."""
    size = resize.image_size
    images = np.zeros((len(batch["file"]), size, size), dtype=np.float32)
    errors = []
    for index, file in enumerate(batch["file"]):
        try:
            images[index] = resize.resize(read_image(file))
            errors.append("")
        except ImageReadError as error:
            errors.append(error.problem)
    return {"path": batch["path"], "image": images, "error": np.array(errors, dtype=object)}


def _readable(errors: np.ndarray) -> np.ndarray:
    return np.array([not error for error in errors], dtype=bool)


class ScoringActor:
    """One model per actor, built once from the same source as the driver's."""

    def __init__(self, source: ScorerSource) -> None:
        self.scorer = source.build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        readable = _readable(batch["error"])
        views = np.full((len(readable), len(self.scorer.view_names)), np.nan, dtype=np.float64)
        scores = np.full(len(readable), np.nan, dtype=np.float64)
        lungs = np.full(len(readable), "", dtype=object)  # lung-field status, when the scores use them
        if readable.any():
            views[readable], scores[readable] = self.scorer.score(batch["image"][readable])
            if self.scorer.lung_fields is not None:
                lungs[readable] = self.scorer.lung_fields
        return {"path": batch["path"], "error": batch["error"], "views": views, "score": scores, LUNG_COLUMN: lungs}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _as_ppad_error(error: BaseException) -> PpadError:
    """Ray wraps what failed in a worker; the first ppad error inside is what the user should see."""
    seen, current = set(), error
    while current is not None and id(current) not in seen:
        if isinstance(current, PpadError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return PpadError(f"Ray scoring failed: {_first_line(error)}")


@contextmanager
def _stderr_held(hold: bool) -> Iterator[None]:
    """With ``hold``, what this process writes to stderr inside the block — Ray's C++ core logs errors it
    recovers from there (core_worker.cc), beyond its logging options, and Ray Data warns — is kept back:
    dropped when the block succeeds, shown when it fails."""
    if not hold:
        yield
        return
    sys.stderr.flush()
    saved, failed = os.dup(2), False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def _connect(ray, address: str | None, workers: int, gpus_per_worker: float) -> None:
    """Start a local instance (no ``address``) or join a cluster; refuse what can never be scheduled."""
    local = {"num_cpus": max(os.cpu_count() or 1, workers + 1)} if address is None else {}
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR", **local)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError … for a bad address
        where = f"at {address}" if address else "locally"
        raise SettingsError(f"cannot start or reach Ray {where}: {_first_line(error)}") from error
    gpus = ray.cluster_resources().get("GPU", 0)
    if address is None and gpus_per_worker and gpus < workers * gpus_per_worker:
        ray.shutdown()
        raise SettingsError(
            f"--workers {workers} × --gpus-per-worker {gpus_per_worker:g} needs {workers * gpus_per_worker:g} GPUs; "
            f"this machine has {gpus:g}"
        )


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
    ``scorer`` (built by the driver from ``source``) names the columns and the resize; films are
    read by absolute path, so workers find them whatever their working folder."""
    ray = require_ray()
    start = time.perf_counter()
    started_here = not ray.is_initialized()  # a local instance is stopped, a cluster connection closed
    with _stderr_held(not progress):  # --quiet: a successful run prints nothing from Ray
        if started_here:
            _connect(ray, address, workers, gpus_per_worker)
        if not progress:
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        try:
            scores_file = ScoresFile(out, source.provenance(scorer), paths, list(missing))
            todo = scores_file.todo()
            failures, scored = list(missing), 0
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True
            context.enable_progress_bars = progress
            context.wait_for_min_actors_s = ACTOR_START_TIMEOUT
            resize = ImageResize(scorer.preprocessing.image_size, scorer.preprocessing.resize_mode)
            films = ray.data.from_items([{"path": str(path), "file": str(Path(path).absolute())} for path in todo])
            films = films.map_batches(
                read_films, fn_kwargs={"resize": resize}, batch_size=READ_BATCH, num_cpus=READ_CPUS
            )
            results = films.map_batches(
                ScoringActor,
                fn_constructor_kwargs={"source": source},
                batch_size=source.batch_size,
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=0 if gpus_per_worker else 1,
                num_gpus=gpus_per_worker,
            )
            try:
                for batch in results.iter_batches(batch_size=CHUNK, batch_format="numpy") if todo else ():
                    chunk, readable = [str(path) for path in batch["path"]], _readable(batch["error"])
                    done = [Path(p) for p, ok in zip(chunk, readable) if ok]
                    unreadable = [
                        ImageReadError(Path(p), e) for p, e, ok in zip(chunk, batch["error"], readable) if not ok
                    ]
                    lungs = None if scorer.lung_fields is None else list(batch[LUNG_COLUMN][readable])
                    views, scores = batch["views"][readable], batch["score"][readable]
                    scores_file.append(chunk_rows(scorer, chunk, done, unreadable, views, scores, lungs))
                    scored += len(done)
                    failures.extend(unreadable)
            except Exception as error:  # a worker's failure arrives wrapped by Ray
                raise _as_ppad_error(error) from error
        finally:
            if started_here:
                ray.shutdown()
    scores_file.finish()
    return ArchiveSummary(scored, failures, len(scores_file.done), time.perf_counter() - start)
