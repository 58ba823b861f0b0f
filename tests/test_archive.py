"""Archive scoring: streamed chunks, rows appended as produced, resumed after a kill to the same CSV."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import ppad.scoring.archive as archive
from ppad.cli.main import cli

TRAIN = ["--backbone", "tiny", "--shots", "8", "--epochs", "1", "--batch-size", "4", "--val-size", "4"]
TRAIN += ["--n-ctx", "4", "--quiet", "--device", "cpu"]
PATCH_TRAIN = ["--method", "patch-knn", "--backbone", "tiny", "--shots", "8", "--val-size", "4"]
PATCH_TRAIN += ["--quiet", "--device", "cpu"]
#: The scored calls the resume tests tear: (run, inputs, uninterrupted CSV) fixtures by method.
CALLS = {"ppad": ("run", "films", "straight"), "patch-knn": ("patch_run", "patch_films", "patch_straight")}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_data):
    out = tmp_path_factory.mktemp("archive") / "run"
    assert invoke("train", "--data", demo_data, "--out", out, *TRAIN).exit_code == 0
    return out


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory, demo_data):
    """A patch memory on each film's lung fields: its CSV has a lung_fields column."""
    out = tmp_path_factory.mktemp("archive-patch") / "run"
    assert invoke("train", "--data", demo_data, "--out", out, *PATCH_TRAIN).exit_code == 0
    return out


@pytest.fixture(scope="module")
def patch_films(demo_data):
    return demo_data / "test"  # 20 chest-like films, not the 700: each film's lung fields are segmented


@pytest.fixture(scope="module")
def patch_straight(patch_run, patch_films, tmp_path_factory):
    out = tmp_path_factory.mktemp("patch-straight") / "scores.csv"
    result = invoke("score", "--run", patch_run, patch_films, "--out", out, "--quiet", "--device", "cpu")
    assert result.exit_code == 0 and "scored 20 images (0 unreadable)" in result.output, result.output
    assert "lung_fields" in out.read_text().splitlines()[0]
    return out


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    folder = tmp_path_factory.mktemp("films")
    rng = np.random.default_rng(0)
    for i in range(700):
        Image.fromarray(rng.integers(0, 255, (40, 36), dtype=np.uint8)).save(folder / f"f{i:04d}.png")
    (folder / "f0005.png").write_bytes(b"\x89PNG broken")  # one bad file in the middle
    return folder


@pytest.fixture(scope="module")
def straight(run, films, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "scores.csv"
    result = invoke("score", "--run", run, films, "--out", out, "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "scored 699 images (1 unreadable)" in result.output
    return out


def test_rows_are_in_input_order_with_errors_in_place(straight, films):
    with open(straight, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [str(p) for p in sorted(films.iterdir())]
    assert rows[5]["path"].endswith("f0005.png") and "cannot be decoded" in rows[5]["error"]
    assert all(row["score"] and not row["error"] for i, row in enumerate(rows) if i != 5)


@pytest.mark.parametrize("method, cut", [("ppad", 0.1), ("ppad", 0.5), ("ppad", 0.93), ("patch-knn", 0.5)])
def test_a_torn_csv_resumes_to_the_uninterrupted_file(request, tmp_path, method, cut):
    run, films, straight = (request.getfixturevalue(name) for name in CALLS[method])
    out = tmp_path / "scores.csv"
    data = straight.read_bytes()
    out.write_bytes(data[: int(len(data) * cut)])  # a kill mid-write leaves a torn last line
    (tmp_path / "scores.csv.run.json").write_bytes((straight.parent / "scores.csv.run.json").read_bytes())
    result = invoke("score", "--run", run, films, "--out", out, "--quiet", "--device", "cpu")
    assert result.exit_code == 0 and "already there from an interrupted run" in result.output
    assert out.read_bytes() == data


def test_killed_score_resumes_to_the_uninterrupted_file(run, films, straight, tmp_path):
    out = tmp_path / "scores.csv"
    command = [sys.executable, "-m", "ppad.cli.main", "score", "--run", str(run), str(films), "--out", str(out)]
    command += ["--quiet", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") > archive.CHUNK:  # the first chunk is written
            break
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert out.read_bytes().count(b"\n") < 701, "the run was not interrupted"
    written = out.read_bytes()
    complete = written[: written.rfind(b"\n") + 1].decode()  # a torn last line is dropped
    rows_done = sum(not row["error"] for row in csv.DictReader(io.StringIO(complete)))  # errors are tried again
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"resuming {out}: {rows_done} of 700 films already scored" in again.stderr
    assert out.read_bytes() == straight.read_bytes()


def test_a_list_of_films_scores_like_the_folder(run, films, straight, tmp_path):
    table = films / "list.csv"
    table.write_text("path\n" + "".join(f"{p.name}\n" for p in sorted(films.glob("*.png"))[:20]))
    out = tmp_path / "list-scores.csv"
    result = invoke("score", "--run", run, table, "--out", out, "--quiet", "--device", "cpu")
    table.unlink()
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == straight.read_text().splitlines()[:21]


def test_a_csv_of_another_run_is_never_appended_to(run, films, tmp_path, demo_data):
    other = tmp_path / "other"
    assert invoke("train", "--data", demo_data, "--out", other, *TRAIN, "--seed", "3").exit_code == 0
    out = tmp_path / "scores.csv"
    assert invoke("score", "--run", run, films / "f0001.png", "--out", out, "--quiet").exit_code == 0
    before = out.read_bytes()
    result = invoke("score", "--run", other, films / "f0002.png", "--out", out, "--quiet")
    assert result.exit_code == 2 and "was not written by this run and checkpoint" in result.output
    assert out.read_bytes() == before
