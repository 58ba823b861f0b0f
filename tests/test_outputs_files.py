"""Nothing a user asked for is lost: per-film files named from whole file names, never another film's; folders
extended, never overwritten; scores CSVs kept per call; unwritable outputs refused in one line before any work.
Every test runs ``ppad`` as a subprocess on real ZhangLab films."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ZHANGLAB, needs_zhanglab
from tests.conftest import run_ppad as ppad
from tests.test_light_cli import error_line, ppad_without_torch

pytestmark = needs_zhanglab

NAMES = ["a.b.c.jpeg", "x.1.jpeg", "x.2.jpeg", "x.jpeg", "x_sides.jpeg", "with space.jpeg"]


def real_films() -> list[Path]:
    return sorted((ZHANGLAB / "test" / "pneumonia").iterdir())[:8]


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> Path:
    """``one/`` holds six real films whose names carry dots, a space and a ``_sides`` ending; ``two/x.jpeg`` and
    ``three/x.jpeg`` are other films with the name of ``one/x.jpeg``."""
    root = tmp_path_factory.mktemp("films")
    sources = real_films()
    for folder in ("one", "two", "three"):
        (root / folder).mkdir()
    for name, source in zip(NAMES, sources):
        shutil.copy(source, root / "one" / name)
    shutil.copy(sources[6], root / "two" / "x.jpeg")
    shutil.copy(sources[7], root / "three" / "x.jpeg")
    return root


@pytest.fixture
def run(zhanglab_tiny_run) -> Path:
    """The session's tiny-backbone run on real films (these tests check files, not detection)."""
    return zhanglab_tiny_run


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A folder nobody can write: permission bits for a user, a read-only mount for root (who ignores them)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        yield Path("/sys/kernel")  # sysfs: root cannot create files there either
        return
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.suffix != ".csv"}


def read_rows(table: Path) -> list[dict]:
    with open(table, newline="") as handle:
        return list(csv.DictReader(handle))


def test_lung_masks_are_named_from_whole_names_and_a_folder_is_extended(films, tmp_path):
    out = tmp_path / "lungs"
    done = ppad("lungs", films / "one", "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    rows = read_rows(out / "lungs.csv")
    assert sorted(Path(r["path"]).name for r in rows) == sorted(NAMES)
    kinds = ("mask", "sides", "overlay")
    written = [r[kind] for r in rows for kind in kinds]
    assert len(set(written)) == 18 and set(written) == set(digests(out))  # 6 films, 3 files each, none shared
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["a.b.c.jpeg"]["mask"] == "a.b.c.png" and by_name["x.1.jpeg"]["mask"] == "x.1.png"
    assert by_name["x.jpeg"]["sides"] == "x_sides.png"
    assert by_name["x_sides.jpeg"]["mask"] != "x_sides.png"  # that name is x.jpeg's sides file
    for row in rows:
        film = np.asarray(Image.open(row["path"]))
        assert np.asarray(Image.open(out / row["mask"])).shape == film.shape[:2]

    before = digests(out)
    done = ppad("lungs", films / "two", "--out", out, "--quiet")  # another film called x.jpeg, a later call
    assert done.returncode == 0, done.stderr
    after = digests(out)
    assert {name: after[name] for name in before} == before  # nothing of the first call replaced
    rows = read_rows(out / "lungs.csv")
    assert len(rows) == 7 and rows[-1]["path"].endswith("two/x.jpeg") and rows[-1]["mask"] == "x-2.png"

    again = ppad("lungs", films / "one", films / "one" / "x.jpeg", "--out", out, "--quiet")  # the same films again
    assert again.returncode == 0, again.stderr
    assert f"given more than once, taken once: {films / 'one' / 'x.jpeg'}" in again.stderr
    assert digests(out).keys() == after.keys() and len(read_rows(out / "lungs.csv")) == 7


def test_maps_of_films_with_one_name_never_replace_each_other(run, films, tmp_path):
    maps, first = tmp_path / "maps", tmp_path / "first.csv"
    done = ppad("score", "--run", run, films / "one", films / "two", "--maps", maps, "--out", first, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "maps of 7 films" in done.stdout
    images = json.loads(first.with_suffix(".json").read_text())["images"]
    assert len({image["map"] for image in images}) == 7 and all(Path(image["map"]).is_file() for image in images)
    one, two = (next(i for i in images if i["path"] == str(films / f / "x.jpeg")) for f in ("one", "two"))
    assert one["map"] != two["map"] and one["overlay"] != two["overlay"]
    index = {row["path"]: row for row in read_rows(maps / "maps.csv")}
    assert all(maps / index[image["path"]]["map"] == Path(image["map"]) for image in images)
    assert np.load(two["map"]).shape == np.asarray(Image.open(films / "two" / "x.jpeg")).shape[:2]

    before = digests(maps)
    later = tmp_path / "later.csv"
    done = ppad("score", "--run", run, films / "three", "--maps", maps, "--out", later, "--quiet")
    assert done.returncode == 0, done.stderr
    after = digests(maps)
    assert {name: after[name] for name in before} == before
    (three,) = json.loads(later.with_suffix(".json").read_text())["images"]
    assert Path(three["map"]).name == "x-3.npy" and len(read_rows(maps / "maps.csv")) == 8


def test_a_film_given_twice_is_scored_and_mapped_once(run, films, tmp_path):
    twice = (films / "one", films / "one" / "x.jpeg")
    done = ppad("score", "--run", run, *twice, "--maps", tmp_path / "m", "--out", tmp_path / "s.csv", "--quiet")
    assert done.returncode == 0, done.stderr
    assert f"given more than once, taken once: {films / 'one' / 'x.jpeg'}" in done.stderr
    assert "maps of 6 films" in done.stdout and len(list((tmp_path / "m").glob("*.npy"))) == 6
    assert len(read_rows(tmp_path / "s.csv")) == 6


@pytest.mark.parametrize(
    ("out", "problem"),
    [
        ("s.json", "s.json: --out is the scores CSV's path and must end in .csv"),
        ("folder", "folder: is a folder; --out is the scores CSV's file path"),
    ],
)
def test_scores_out_is_a_csv_path(run, films, tmp_path, out, problem):
    (tmp_path / "folder").mkdir()
    done = ppad("score", "--run", run, films / "two", "--out", tmp_path / out)
    assert problem in error_line(done) and not (tmp_path / "s.json").exists()


def test_the_default_scores_csv_is_one_per_call_and_a_rerun_tries_missing_films_again(run, films, tmp_path):
    for name in ("scores.csv", "scores-2.csv", "scores-3.csv"):
        assert not (run / name).exists()
    assert ppad("score", "--run", run, films / "one", "--quiet").returncode == 0
    first = (run / "scores.csv").read_bytes()
    done = ppad("score", "--run", run, films / "two", "--quiet")  # another call: its own file
    assert done.returncode == 0 and "→ " + str(run / "scores-2.csv") in done.stdout, done.stdout
    assert (run / "scores.csv").read_bytes() == first and len(read_rows(run / "scores-2.csv")) == 1

    late = tmp_path / "late.jpeg"
    call = ("score", "--run", run, late, films / "two", "--quiet")
    assert ppad(*call).returncode == 0
    rows = read_rows(run / "scores-3.csv")
    assert [r["error"] for r in rows] == ["no such file or folder", ""]
    shutil.copy(films / "three" / "x.jpeg", late)  # the film arrives; the same call is run again
    done = ppad(*call)
    assert done.returncode == 0 and "trying again 1 inputs" in done.stderr, done.stderr
    assert [r["path"] for r in read_rows(run / "scores-3.csv")] == [str(late), str(films / "two" / "x.jpeg")]
    assert all(r["score"] and not r["error"] for r in read_rows(run / "scores-3.csv"))
    assert not (run / "scores-4.csv").exists()

    done = ppad("score", "--run", run, films / "three", "--out", run / "scores.csv")  # named by the user: refused
    assert "holds the scores of another call" in error_line(done)
    assert (run / "scores.csv").read_bytes() == first
    for name in ("scores.csv", "scores-2.csv", "scores-3.csv"):
        (run / name).unlink()


def test_unwritable_outputs_are_one_line_before_any_work(run, films, read_only, tmp_path):
    film = films / "two" / "x.jpeg"
    light = [  # refused before PyTorch is imported: nothing is loaded or scored first
        ("score", "--run", run, film, "--out", read_only / "s.csv"),
        ("score", "--run", run, film, "--maps", read_only / "maps"),
        ("lungs", film, "--out", read_only / "lungs"),
        ("train", "--data", films, "--out", read_only / "run", "--backbone", "tiny"),
    ]
    for args in light:
        assert "cannot be written" in error_line(ppad_without_torch(*args)), args
    for args in [
        ("evaluate", "--run", run, "--data", ZHANGLAB, "--out", read_only / "evaluation"),
        ("export", "--run", run, "--out", read_only / "model.onnx"),
    ]:
        assert "cannot be written" in error_line(ppad(*args)), args


def test_not_a_run_and_no_film_are_answered_without_torch(films, tmp_path):
    (tmp_path / "empty").mkdir()
    done = ppad_without_torch("score", "--run", tmp_path / "empty", films / "two")
    assert error_line(done).endswith("not a ppad run folder (no config.json); train one with `ppad train`")
    done = ppad_without_torch("lungs", tmp_path / "missing.png", "--out", tmp_path / "lungs")
    assert error_line(done).endswith(
        "none of the 1 inputs is a film: " + f"{tmp_path / 'missing.png'}: no such file or folder"
    )
    assert not (tmp_path / "lungs").exists()
