"""Shared fixtures: a tiny CLIP saved and reloaded through the real loading path, demo data, and the runs
on real films that several tests only read (trained once per test session; see CONTRIBUTING.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # `pytest -n N`: each worker (and the ppad it runs) gets its share
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])  # of the cores, not all of them
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated weights go to a per-session folder, never the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("ppad-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("PPAD_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="session")
def backbone():
    from ppad.backbones import load_backbone

    return load_backbone("tiny")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ppad.data import write_demo_dataset

    return write_demo_dataset(
        tmp_path_factory.mktemp("demo") / "data", n_train=24, n_test_normal=10, n_test_abnormal=10, seed=3
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


NIH = SHARED_DATA / "nih-cxr8"
ZHANGLAB = SHARED_DATA / "zhanglab"
needs_nih = pytest.mark.skipif(not (NIH / "labels.csv").is_file(), reason=f"real NIH films not found at {NIH}")
needs_zhanglab = pytest.mark.skipif(not ZHANGLAB.is_dir(), reason=f"real ZhangLab films not found at {ZHANGLAB}")


def zhanglab_manifest(path: Path, train_normals: int, test_per_class: int = 0) -> list:
    """A CSV manifest of the first real ZhangLab train normals (+ test films of each class);
    returns the test items it lists."""
    from ppad.data import discover, write_manifest

    subset = discover(ZHANGLAB).subset(train_normals, test_per_class)
    write_manifest(subset, path)
    return subset.test


@pytest.fixture(scope="session")
def cxr_lite():
    """The shipped backbone: wheel towers + the packaged pre-trained heads."""
    from ppad.backbones import load_backbone

    return load_backbone("cxr-lite")


def run_ppad(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The ``ppad`` command as a user runs it: a subprocess, arguments as strings."""
    command = [sys.executable, "-m", "ppad.cli.main", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd)


@contextmanager
def session_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A folder shared by every worker of this test session (``pytest -n``: the folder above each worker's own
    temporary folder), held under a file lock while the caller fills or reads it: what one worker builds there,
    the others find (the pattern pytest-xdist's documentation gives for session fixtures that run once)."""
    base = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        base = base.parent
    folder = base / name
    with FileLock(f"{folder}.lock"):
        folder.mkdir(exist_ok=True)
        yield folder


def run_ppad_once(folder: Path, step: str, *args) -> subprocess.CompletedProcess:
    """``run_ppad(*args)`` the first time a session reaches ``step`` in ``folder`` (held by
    :func:`session_folder`); its recorded result every later time."""
    record = folder / f"{step}.json"
    if not record.is_file():
        done = run_ppad(*args)
        record.write_text(
            json.dumps({"args": done.args, "returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr})
        )
    saved = json.loads(record.read_text())
    return subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"])


@dataclass(frozen=True)
class SharedRun:
    """A run trained and evaluated once per test session through the CLI, for the tests that only read it.

    ``run/evaluation`` holds ``evaluate --data manifest``'s output; a test writes anything else under its own
    ``tmp_path`` (scores with ``--out``, maps, ``evaluate --out``), never into ``run``."""

    manifest: Path
    test: list
    run: Path
    trained: subprocess.CompletedProcess
    evaluated: subprocess.CompletedProcess


#: The shared runs' training options: the shipped backbone where detection matters, the tiny one for wiring.
CXR_LITE_SCHEDULE = (
    "--shots",
    "16",
    "--val-size",
    "8",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--quiet",
    "--device",
    "cpu",
)
TINY_SCHEDULE = ("--backbone", "tiny", "--shots", "8", "--val-size", "8", "--epochs", "1", "--quiet", "--device", "cpu")


def shared_zhanglab_run(tmp_path_factory: pytest.TempPathFactory, name: str, *options: str) -> SharedRun:
    """``ppad train *options`` on the shipped backbone with 24 real ZhangLab train normals (16 shots, 8 for
    validation; one epoch, batches of 8 where the method trains), then ``evaluate`` on 10 test films of each
    class with 100 bootstrap resamples: once per test session, in the session folder ``name``."""
    if not ZHANGLAB.is_dir():
        pytest.skip(f"real ZhangLab films not found at {ZHANGLAB}")
    with session_folder(tmp_path_factory, name) as root:
        manifest, run = root / "films.csv", root / "run"
        test = zhanglab_manifest(manifest, train_normals=24, test_per_class=10)
        trained = run_ppad_once(root, "train", "train", *options, "--data", manifest, "--out", run, *CXR_LITE_SCHEDULE)
        assert trained.returncode == 0, trained.stderr
        evaluate = ("evaluate", "--run", run, "--data", manifest, "--quiet", "--bootstrap", "100", "--device", "cpu")
        evaluated = run_ppad_once(root, "evaluate", *evaluate)
        assert evaluated.returncode == 0, evaluated.stderr
    return SharedRun(manifest, test, run, trained, evaluated)


@pytest.fixture(scope="session")
def zhanglab_knn_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """``knn`` (see :func:`shared_zhanglab_run`)."""
    return shared_zhanglab_run(tmp_path_factory, "zhanglab-knn", "--method", "knn")


@pytest.fixture(scope="session")
def zhanglab_patch_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """``ppad train`` with no ``--method``: the shipped backbone's validated default, ``patch-knn`` on each
    film's lung fields (see :func:`shared_zhanglab_run`)."""
    return shared_zhanglab_run(tmp_path_factory, "zhanglab-patch")


@pytest.fixture(scope="session")
def zhanglab_fused_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """``ppad+knn`` on each film's lung fields (see :func:`shared_zhanglab_run`)."""
    return shared_zhanglab_run(tmp_path_factory, "zhanglab-fused", "--method", "ppad+knn", "--region-set", "lungs")


@pytest.fixture(scope="session")
def zhanglab_tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PPAD on image halves with the tiny backbone (for tests of files and columns, not of detection): 16 real
    ZhangLab train normals, 8 shots, 8 for validation, one epoch. Tests write scores beside it only with
    ``--out``, or remove what they write."""
    if not ZHANGLAB.is_dir():
        pytest.skip(f"real ZhangLab films not found at {ZHANGLAB}")
    with session_folder(tmp_path_factory, "zhanglab-tiny") as root:
        zhanglab_manifest(root / "data.csv", train_normals=16)
        done = run_ppad_once(root, "train", "train", "--data", root / "data.csv", "--out", root / "run", *TINY_SCHEDULE)
        assert done.returncode == 0, done.stderr
    return root / "run"


#: Session fixtures on real films: the tests reading one are marked ``real_films``.
SHARED_RUNS = ("zhanglab_knn_run", "zhanglab_patch_run", "zhanglab_fused_run", "zhanglab_tiny_run")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test that skips without the real films (``needs_zhanglab``, ``needs_nih``, any skip naming a
    path under ``SHARED_DATA``, a shared run) is also marked ``real_films``: ``pytest -m "not real_films"`` is the
    fast subset."""
    reasons = [str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif")]
    skips_without_films = any(str(SHARED_DATA) in reason for reason in reasons)
    reads_a_shared_run = bool(set(SHARED_RUNS) & set(getattr(item, "fixturenames", ())))
    if skips_without_films or reads_a_shared_run:
        item.add_marker(pytest.mark.real_films)
