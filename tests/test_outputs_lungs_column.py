"""Issue 27: every score row of a run on lung fields says whether that film's lung fields were trusted
(``lung_fields``: ``trusted`` or ``halves: <reason>``) — local, ONNX, Ray and the service alike — while a
run on image halves keeps its columns; and ``--engine ray --quiet`` prints nothing of Ray's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_SCHEDULE, needs_zhanglab, zhanglab_manifest
from tests.conftest import run_ppad as ppad

UNIFORM, BLANK, BROKEN = "uniform.png", "blank.png", "broken.png"


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def lung_column(path: Path) -> dict[str, str]:
    """Each film's ``lung_fields`` by file name."""
    return {Path(row["path"]).name: row["lung_fields"] for row in rows(path)}


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> tuple[Path, Path]:
    """(manifest of real ZhangLab train normals, a folder of real test films plus a uniform, a black
    and an unreadable one)."""
    root = tmp_path_factory.mktemp("lungs-column")
    manifest = root / "normals.csv"
    test = zhanglab_manifest(manifest, train_normals=16, test_per_class=3)
    folder = root / "films"
    folder.mkdir()
    for item in test:
        (folder / item.path.name).symlink_to(item.path)
    Image.fromarray(np.full((256, 256), 128, np.uint8)).save(folder / UNIFORM)
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(folder / BLANK)
    (folder / BROKEN).write_bytes(b"\x89PNG not really")
    return manifest, folder


@pytest.fixture(scope="module")
def lungs_run(films) -> Path:
    manifest, folder = films
    run = folder.parent / "lungs-run"
    done = ppad("train", "--region-set", "lungs", "--data", manifest, "--out", run, *TINY_SCHEDULE)
    assert done.returncode == 0, done.stderr
    return run


@needs_zhanglab
def test_every_scoring_path_says_whether_each_films_lung_fields_were_trusted(films, lungs_run, tmp_path):
    _, folder = films
    local = tmp_path / "local.csv"
    done = ppad("score", "--run", lungs_run, folder, "--out", local, "--quiet")
    assert done.returncode == 0, done.stderr
    header = list(rows(local)[0])
    assert header[-2:] == ["lung_fields", "error"] and header[-3] == "p_whole_image"
    status = lung_column(local)
    assert status[UNIFORM] == "halves: no lung field found"
    assert status[BLANK].startswith("halves: ") and status[BROKEN] == ""
    assert sum(value == "trusted" for value in status.values()) >= 3  # most real films' masks are trusted

    # the same reasons `ppad lungs` gives for those films
    done = ppad("lungs", folder / UNIFORM, folder / BLANK, "--out", tmp_path / "lungs", "--quiet")
    assert done.returncode == 0, done.stderr
    for row in rows(tmp_path / "lungs" / "lungs.csv"):
        assert status[Path(row["path"]).name] == f"{row['regions']}: {row['reason']}"

    # the JSON rows carry it too (the unreadable film is among the failures, without it)
    report = json.loads(local.with_suffix(".json").read_text())
    assert {Path(image["path"]).name: image["lung_fields"] for image in report["images"]} == {
        name: value for name, value in status.items() if name != BROKEN
    }

    model = tmp_path / "export" / "model.onnx"
    done = ppad("export", "--run", lungs_run, "--format", "onnx", "--out", model)
    assert done.returncode == 0, done.stderr
    onnx = tmp_path / "onnx.csv"
    done = ppad("score", "--onnx", model, folder, "--out", onnx, "--batch-size", 2, "--quiet")
    assert done.returncode == 0, done.stderr
    assert list(rows(onnx)[0]) == header and lung_column(onnx) == status

    pytest.importorskip("ray", reason="Ray is the optional extra ppad[ray]")
    ray_csv = tmp_path / "ray.csv"
    done = ppad("score", "--run", lungs_run, folder, "--out", ray_csv, "--engine", "ray", "--quiet")
    assert done.returncode == 0, done.stderr
    assert list(rows(ray_csv)[0]) == header and lung_column(ray_csv) == status
    # --quiet: nothing of Ray's on stderr (no core_worker.cc line, no UserWarning), only ppad's own
    assert done.stderr.splitlines() == [line for line in done.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(done.stderr.splitlines()) == 1 and BROKEN in done.stderr


@needs_zhanglab
def test_the_service_answers_each_films_lung_field_status(films, lungs_run, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from ppad.serve import ServeLimits
    from ppad.serve.app import build_app
    from ppad.serve.model import ServedModel

    _, folder = films
    local = tmp_path / "local.csv"
    done = ppad("score", "--run", lungs_run, folder, "--out", local, "--quiet")
    assert done.returncode == 0, done.stderr
    status = lung_column(local)
    served = ServedModel.load(lungs_run, device="cpu")
    with TestClient(build_app(served, ServeLimits())) as client:
        for name in sorted(status.keys() - {BROKEN}):
            upload = {"file": (name, (folder / name).read_bytes(), "application/octet-stream")}
            answer = client.post("/v1/score", params={"map": "false"}, files=upload)
            assert answer.status_code == 200, answer.text
            assert answer.json()["lung_fields"] == status[name], name


@needs_zhanglab
def test_a_run_on_image_halves_keeps_its_columns(films, zhanglab_tiny_run, tmp_path):
    """A run on halves (the session's tiny run: ``TINY_SCHEDULE``, as ``lungs_run`` but for ``--region-set``) has no
    ``lung_fields`` column; Ray keeps a run's columns (``test_ray_engine``) and prints nothing of its own under
    ``--quiet`` (above)."""
    _, folder = films
    run = zhanglab_tiny_run
    film = next(path for path in sorted(folder.iterdir()) if path.suffix == ".jpeg")
    out = tmp_path / "halves.csv"
    done = ppad("score", "--run", run, film, "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    views = ["p_left_lung", "p_right_lung", "p_upper_lung", "p_lower_lung", "p_whole_image"]
    assert list(rows(out)[0]) == ["path", "score", "prediction", "top_view", *views, "error"]
    assert "lung_fields" not in json.loads(out.with_suffix(".json").read_text())["images"][0]
