"""Shared fixtures: a tiny CLIP saved and reloaded through the real loading path, demo data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that skips without the real films (``needs_zhanglab``, ``needs_nih``, any skip naming a
    path under ``SHARED_DATA``) is also marked ``real_films``: ``pytest -m "not real_films"`` is the fast subset."""
    for item in items:
        if any(str(SHARED_DATA) in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif")):
            item.add_marker(pytest.mark.real_films)
