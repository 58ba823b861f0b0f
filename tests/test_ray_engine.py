"""`ppad score --engine ray`: a local Ray instance with 2 scoring actors writes what the
single-process engine writes, resumes its CSV, and Ray stays optional."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_ppad as ppad

pytest.importorskip("ray", reason="Ray is the optional extra ppad[ray] (in [test])")


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_same_scores(found: list[dict], expected: list[dict]) -> None:
    """Same rows in the same order (and lung-field status); probabilities equal up to float32 batch-composition rounding
    (the memory's calibration divides distances by their spread among normals, ~0.008 on cxr-lite,
    which magnifies the tower's float32 noise about 120×: 1e-5 between batch sizes 32 and 1)."""
    assert [r["path"] for r in found] == [r["path"] for r in expected]
    for row, reference in zip(found, expected):
        assert row["error"] == reference["error"] and row["prediction"] == reference["prediction"]
        assert row.get("lung_fields") == reference.get("lung_fields")
        for column in (c for c in row if c == "score" or c.startswith("p_")):
            if reference[column]:
                assert abs(float(row[column]) - float(reference[column])) <= 2e-5, (row["path"], column)


def test_ray_engine_scores_a_folder_like_the_single_process_engine(zhanglab_patch_run, tmp_path):
    """The session's patch-knn run, read only: on each film's lung fields, so the actors return each film's
    lung-field status too (the scorer is the same for every method; the lung_fields column is not)."""
    test = zhanglab_patch_run.test
    run = tmp_path / "run"
    run.symlink_to(zhanglab_patch_run.run)

    films = tmp_path / "films"
    films.mkdir()
    for item in test:
        (films / item.path.name).symlink_to(item.path)
    (films / "broken.png").write_bytes(b"\x89PNG not really")

    done = ppad("score", "--run", run, films, "--out", tmp_path / "local.csv", "--quiet")
    assert done.returncode == 0, done.stderr
    local = rows(tmp_path / "local.csv")
    assert len(local) == 21 and sum(bool(r["error"]) for r in local) == 1
    assert all(r["lung_fields"] for r in local if not r["error"])

    # relative paths, as a user types them: workers read them from wherever they run
    relative = ("--run", "run", "films", "--out", "ray.csv", "--engine", "ray", "--workers", 2, "--quiet")
    done = ppad("score", *relative, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scored 20 images (1 unreadable)" in done.stdout
    local_as_typed = [{**row, "path": str(Path(row["path"]).relative_to(tmp_path))} for row in local]
    assert list(rows(tmp_path / "ray.csv")[0]) == list(local[0])  # the same columns, in the same order
    assert_same_scores(rows(tmp_path / "ray.csv"), local_as_typed)
    assert (tmp_path / "ray.json").is_file()

    done = ppad("score", "--run", run, films, "--out", tmp_path / "gpu.csv", "--engine", "ray", "--gpus-per-worker", 1)
    assert done.returncode == 2 and "needs 2 GPUs; this machine has 0" in done.stderr, done.stderr

    # an interrupted CSV (torn last line) is resumed by the Ray engine, skipping what is done
    data = (tmp_path / "local.csv").read_bytes()
    cut = data[: data.index(b"\n", len(data) // 2) + 25]
    (tmp_path / "resumed.csv").write_bytes(cut)
    (tmp_path / "resumed.csv.run.json").write_bytes((tmp_path / "local.csv.run.json").read_bytes())
    done = ppad("score", "--run", run, films, "--out", tmp_path / "resumed.csv", "--engine", "ray", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "rows already there from an interrupted run" in done.stdout
    assert_same_scores(rows(tmp_path / "resumed.csv"), local)


def test_ray_options_are_checked_and_ray_stays_optional(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    film = tmp_path / "film.png"
    film.write_bytes(b"")
    for args, message in [
        (("--engine", "ray", "--maps", tmp_path / "maps"), "--maps runs with --engine local only"),
        (("--address", "auto"), "--address, --workers and --gpus-per-worker apply to --engine ray"),
        (("--workers", 3), "--address, --workers and --gpus-per-worker apply to --engine ray"),
        (("--engine", "ray", "--device", "cuda"), "--gpus-per-worker puts the actors on GPUs"),
    ]:
        done = ppad("score", "--run", run, film, *args, "--quiet")
        assert done.returncode == 2 and message in done.stderr, done.stderr

    script = textwrap.dedent(
        f"""
        import sys
        class NoRay:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "ray":
                    raise ImportError("no ray here")
        sys.meta_path.insert(0, NoRay())
        from ppad.cli.main import cli
        cli(["score", "--onnx", {str(tmp_path / "m.onnx")!r}, {str(film)!r}, "--engine", "ray", "--quiet"])
        """
    )
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "m.onnx.json").write_text(
        '{"format": "ppad-onnx", "format_version": 1, "method": "knn", "view_names": ["memory"], "eta": 0.8,'
        ' "threshold": 0.5, "preprocessing": {"image_size": 224, "resize_mode": "pad"}}'
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "--engine ray needs Ray: pip install 'ppad[ray]'" in done.stderr
