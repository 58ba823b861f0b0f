"""The command line checks its options without PyTorch, and ``ppad score --onnx`` scores real
films with PyTorch blocked; the light choice lists name exactly what the registries hold."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ppad import choices
from ppad.cli.main import COMMANDS
from tests.conftest import needs_zhanglab, zhanglab_manifest
from tests.conftest import run_ppad as ppad

NO_TORCH = textwrap.dedent(
    """
    import sys
    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "open_clip"):
                raise ImportError("torch is blocked in this test: " + name)
    sys.meta_path.insert(0, NoTorch())
    """
)


def ppad_without_torch(*args) -> subprocess.CompletedProcess:
    """``ppad ARGS`` in an interpreter where importing torch fails (as if it were not installed)."""
    code = NO_TORCH + "from ppad.cli.main import cli\ncli(sys.argv[1:], prog_name='ppad')"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600)


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a user error (exit 2, no traceback)."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def registries() -> list[tuple[tuple[str, ...], list[str]]]:
    from ppad.backbones import ARCHITECTURES
    from ppad.bench import ABLATIONS
    from ppad.maps import MAP_METHODS
    from ppad.methods import METHODS, PRESETS
    from ppad.regions import PATCH_RULES
    from ppad.runs import PROMPT_FILES
    from ppad.synthesis import SYNTHESIS_TASKS
    from ppad.training.losses import LOSSES

    return [
        (choices.ARCHITECTURE_NAMES, list(ARCHITECTURES)),
        (choices.METHOD_NAMES, list(METHODS)),
        (choices.PRESET_NAMES, list(PRESETS)),
        (choices.PATCH_RULE_NAMES, list(PATCH_RULES)),
        (choices.LOSS_NAMES, list(LOSSES)),
        (choices.SYNTHESIS_NAMES, list(SYNTHESIS_TASKS)),
        (choices.ABLATION_NAMES, list(ABLATIONS)),
        (choices.CHECKPOINTS, list(PROMPT_FILES)),
        (choices.MAP_METHOD_NAMES, list(MAP_METHODS)),
    ]


def test_each_choice_list_equals_its_registry():
    for light, registry in registries():
        assert list(light) == registry


def test_every_command_module_loads_without_torch():
    code = NO_TORCH + textwrap.dedent(
        """
        import importlib
        from ppad.cli.main import COMMANDS
        for module, _ in COMMANDS.values():
            importlib.import_module(module)
        print("loaded", *COMMANDS)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["loaded", *COMMANDS]


def test_option_errors_are_reported_before_torch_is_imported(tmp_path):
    film, model = tmp_path / "film.png", tmp_path / "model.onnx"
    film.write_bytes(b"not read")
    model.write_bytes(b"not read either")
    cases = [
        (
            ("train", "--epochs", "0", "--data", tmp_path, "--out", tmp_path / "run"),
            "--epochs must be at least 1, got 0",
        ),
        (("bench", "--data", tmp_path, "--out", tmp_path / "b", "--shots", "0"), "--shots must be at least 1, got 0"),
        (("score", "--onnx", model, "--device", "cuda", film), "--onnx scores on the CPU"),
        (("score", "--run", tmp_path, "--onnx", model, film), "give either --run RUN or --onnx MODEL"),
        (("evaluate", "--run", tmp_path), "give --data (a labelled test split), --boxes (a boxes CSV) or both"),
    ]
    for args, message in cases:
        assert message in error_line(ppad_without_torch(*args))
    assert not (tmp_path / "run").exists() and not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def exported_knn(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A ``knn`` run on 12 real ZhangLab normals (tiny backbone) exported to ONNX, and 8 real test films."""
    folder = tmp_path_factory.mktemp("onnx-no-torch")
    test = zhanglab_manifest(folder / "films.csv", train_normals=12, test_per_class=4)
    run = ["--method", "knn", "--backbone", "tiny", "--shots", "8", "--val-size", "4", "--quiet", "--device", "cpu"]
    done = ppad("train", "--data", folder / "films.csv", "--out", folder / "run", *run)
    assert done.returncode == 0, done.stderr
    done = ppad("export", "--run", folder / "run", "--out", folder / "model.onnx")
    assert done.returncode == 0, done.stderr
    return folder / "model.onnx", [item.path for item in test]


@needs_zhanglab
def test_score_onnx_runs_without_torch_and_says_when_it_resumes(exported_knn, tmp_path):
    model, films = exported_knn
    out = tmp_path / "scores.csv"
    done = ppad_without_torch("score", "--onnx", model, *films, "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "scored 8 images (0 unreadable)" in done.stdout and "resuming" not in done.stderr
    finished = out.read_bytes()
    out.write_bytes(b"".join(finished.splitlines(keepends=True)[:6]))  # as a kill after 5 rows leaves it
    done = ppad_without_torch("score", "--onnx", model, *films, "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert f"resuming {out}: 5 of 8 films already scored" in done.stderr
    assert out.read_bytes() == finished
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [str(film) for film in films]
    assert all(0 <= float(row["score"]) <= 1 and not row["error"] for row in rows)
    done = ppad_without_torch("score", "--onnx", model, *films[:5], "--out", out)  # another call: never appended
    assert "holds the scores of another call (8 other inputs)" in error_line(done)
    assert out.read_bytes() == finished


@needs_zhanglab
def test_a_list_of_no_films_is_named_before_any_model_loads(exported_knn, tmp_path):
    model, films = exported_knn
    empty, other = tmp_path / "empty.csv", tmp_path / "other.csv"
    empty.write_text("path\n")
    other.write_text("path\n")
    problem = "holds no films (a 'path' header and no rows)"
    line = error_line(ppad_without_torch("score", "--onnx", model, empty))
    assert line == f"error: {empty}: {problem}"
    line = error_line(ppad_without_torch("score", "--onnx", model, empty, other))
    assert line == f"error: {empty}, {other}: each {problem}"
    assert not model.with_name("model-scores.csv").exists()  # refused before the CSV was started
    out = tmp_path / "mixed.csv"
    done = ppad_without_torch("score", "--onnx", model, empty, films[0], "--out", out, "--quiet")
    assert done.returncode == 0 and f"skipped: {empty}: {problem}" in done.stderr, done.stderr
    with open(out, newline="") as handle:
        assert {row["path"]: row["error"] for row in csv.DictReader(handle)} == {str(empty): problem, str(films[0]): ""}
