"""The error boundary, input by input: the table of bad inputs (docs/cli.md), each checked here.

A user error prints one line naming the file or option and exits 2; a bug keeps its traceback.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ppad.backbones import CheckpointError, read_state_dict, tiny_weights_path
from ppad.backbones.loading import BACKBONE_FILE_KINDS
from ppad.cli.main import cli
from ppad.data import discover, draw_few_shot
from ppad.data.readers import ImageReadError, read_image, read_image_bytes
from ppad.errors import DataError, SettingsError
from tests.conftest import ZHANGLAB, needs_zhanglab, run_ppad

TRAIN = ["--backbone", "tiny", "--shots", "8", "--epochs", "2", "--batch-size", "4", "--val-size", "4"]
TRAIN += ["--n-ctx", "4", "--quiet", "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data):
    run = tmp_path_factory.mktemp("errors") / "run"
    result = invoke("train", "--data", demo_data, "--out", run, *TRAIN)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run_copy(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


@pytest.fixture
def film(demo_data):
    return discover(demo_data).test[0].path


def test_corrupt_prompts_file_names_the_file(run_copy, film):
    (run_copy / "prompts.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    assert_user_error(invoke("score", "--run", run_copy, film, "--device", "cpu"), "prompts.safetensors", "safetensors")


def test_prompt_tensor_of_the_wrong_shape_names_the_file(run_copy, film):
    path = run_copy / "prompts.safetensors"
    tensors = load_file(str(path))
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3, 3)
    with safe_open(str(path), framework="pt") as handle:  # keep the fingerprint: the shape check must fail
        metadata = handle.metadata()
    save_file(tensors, str(path), metadata=metadata)
    assert_user_error(invoke("score", "--run", run_copy, film, "--device", "cpu"), "prompts.safetensors", name)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"method": "ppad"}', "missing the field 'model'"),
        (None, "written by a newer ppad"),
        ("unknown-method", "cannot rebuild the model"),
    ],
)
def test_corrupt_config_names_the_file(run_copy, film, content, needle):
    path = run_copy / "config.json"
    config = json.loads(path.read_text())
    if content is None:
        content = json.dumps({**config, "format_version": 99})
    elif content == "unknown-method":
        content = json.dumps({**config, "method": "nope"})
    path.write_text(content)
    assert_user_error(invoke("score", "--run", run_copy, film, "--device", "cpu"), "config.json", needle)


def test_corrupt_manifest_names_the_file(run_copy, demo_data):
    (run_copy / "manifest.json").write_text('{"method": 3}')
    result = invoke("evaluate", "--run", run_copy, "--data", demo_data, "--quiet", "--device", "cpu")
    assert_user_error(result, "manifest.json", "field 'method' should be str")


def test_corrupt_training_state_names_the_file_and_the_way_out(run_copy, demo_data):
    (run_copy / "train_state.pt").write_bytes(b"PK\x03\x04 truncated")
    (run_copy / "manifest.json").write_text(
        json.dumps({k: v for k, v in json.loads((run_copy / "manifest.json").read_text()).items() if k != "finished"})
    )
    result = invoke("train", "--data", demo_data, "--out", run_copy, *TRAIN)
    assert_user_error(result, "train_state.pt", "delete it to restart")


@pytest.mark.parametrize(
    ("device", "needle"),
    [("banana", "--device 'banana' is not a device name"), ("cuda:7", "--device cuda:7"), ("meta", "--device meta")],
)
def test_bad_devices_are_one_line(trained, film, device, needle):
    assert_user_error(invoke("score", "--run", trained, film, "--device", device), needle)


@pytest.mark.parametrize("option", ["--batch-size", "--epochs", "--shots", "--val-every"])
def test_zero_schedule_options_name_the_option(demo_data, tmp_path, option):
    result = invoke("train", "--data", demo_data, "--out", tmp_path / "r", *TRAIN, option, "0")
    assert_user_error(result, f"{option} must be at least 1")
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_score_with_nothing_scorable_exits_2_and_still_lists_each_problem(trained, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "s.csv"
    result = invoke("score", "--run", trained, tmp_path / "missing.png", bad, empty, "--out", out, "--device", "cpu")
    assert_user_error(result, "none of the 3 inputs could be scored")
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == 3 and all(row.split(",")[-1] for row in rows)  # one row per input, each with its error
    assert "missing.png: no such file or folder" in result.output and "holds no supported image" in result.output


def test_score_with_some_good_inputs_exits_0(trained, film, tmp_path):
    result = invoke("score", "--run", trained, film, tmp_path / "missing.png", "--out", tmp_path / "s.csv")
    assert result.exit_code == 0 and "scored 1 images (1 unreadable)" in result.output


def test_a_folder_that_is_not_a_run(tmp_path, film):
    assert_user_error(invoke("score", "--run", tmp_path, film), "not a ppad run folder")


def test_internal_errors_keep_their_traceback(trained, film, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in ppad")

    monkeypatch.setattr("ppad.scoring.archive.score_archive", broken)
    result = invoke("score", "--run", trained, film, "--device", "cpu")
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


def test_help_imports_no_heavy_module():
    code = "import sys; from ppad.cli.main import cli; cli(['--help'], standalone_mode=False); "
    code += "print(sorted(m for m in ('torch', 'numpy', 'timm', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "train" in done.stdout and "serve" in done.stdout


def test_command_table_matches_each_command_help():
    import importlib

    from ppad.cli.main import COMMANDS

    for name, (module, short) in COMMANDS.items():
        command = importlib.import_module(module).command
        assert command.name == name and command.help.splitlines()[0] == short


# Inputs that used to leak a third party's text or mislead (issue 19, items 7, 8, 9, 11): each is
# checked through the command as a user runs it, then at the function that words it.

CLI_TRAIN = ["--shots", "8", "--val-size", "4", "--epochs", "1", "--quiet", "--device", "cpu"]
NOT_DICOM = "cannot be decoded: not a DICOM file (no 'DICM' marker at byte 128)"


def assert_cli_error(done: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2 and exactly one ``error:`` line on stderr, with no traceback and no third party's advice."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and lines == [f"error: {message}"], done.stderr
    for leak in ("Traceback", "weights_only", "force=True"):
        assert leak not in done.stderr, done.stderr


def write_jpeg(path):
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(path, format="JPEG")


def write_cut_checkpoint(path):
    whole = tiny_weights_path().read_bytes()
    path.write_bytes(whole[: len(whole) // 2])


@pytest.mark.parametrize(
    ("name", "write", "problem"),
    [
        ("photo.jpg", write_jpeg, f"is not a backbone weights file; expected {BACKBONE_FILE_KINDS}"),
        (
            "cut.pt",
            write_cut_checkpoint,
            "is truncated or corrupt (PytorchStreamReader failed reading zip archive: "
            "failed finding central directory)",
        ),
    ],
)
def test_a_file_that_is_not_a_backbone_is_one_line_without_unsafe_advice(demo_data, tmp_path, name, write, problem):
    path = tmp_path / name
    write(path)
    done = run_ppad("train", "--data", demo_data, "--out", tmp_path / "r", "--backbone", path, *CLI_TRAIN)
    assert_cli_error(done, f"{path}: {problem}")
    assert not (tmp_path / "r").exists()


def test_a_folder_that_is_not_a_pretrain_output_names_the_missing_file(demo_data, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    done = run_ppad("train", "--data", demo_data, "--out", tmp_path / "r", "--backbone", folder, *CLI_TRAIN)
    assert_cli_error(done, f"{folder}: is a folder but not a `ppad pretrain` output: it has no backbone.safetensors")


class Pickled:
    pass


def save_legacy_cut(path):
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(64, 64)}, buffer, _use_new_zipfile_serialization=False)
    path.write_bytes(buffer.getvalue()[:1000])


def save_other_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not weights")


@pytest.mark.parametrize(
    ("name", "write", "problem"),
    [
        ("empty.pt", lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
        (
            "module.pt",
            lambda path: torch.save(torch.nn.Linear(2, 2), path),
            "holds pickled Python objects (torch.nn.modules.linear.Linear), not only tensors: ppad never runs code "
            "from a weights file; save the model's state_dict() instead",
        ),
        (
            "objects.pt",
            lambda path: torch.save({"state_dict": {"x": Pickled()}}, path),
            "holds pickled Python objects (tests.test_errors.Pickled), not only tensors: ppad never runs code "
            "from a weights file; save the model's state_dict() instead",
        ),
        ("legacy.pt", save_legacy_cut, "is truncated or corrupt (unexpected EOF, expected"),
        ("broken.safetensors", lambda path: path.write_bytes(b"hello world"), "is truncated or corrupt (Error while"),
        ("bundle.zip", save_other_zip, "is not a backbone weights file; expected a CLIP state dict"),
        ("notes.txt", lambda path: path.write_text("notes\n" * 40), "is not a backbone weights file; expected"),
    ],
)
def test_unreadable_weights_say_what_is_wrong(tmp_path, name, write, problem):
    path = tmp_path / name
    write(path)
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    assert str(error.value).startswith(f"{path}: {problem}"), str(error.value)
    assert "weights_only" not in str(error.value) and "\n" not in str(error.value)


def test_safetensors_are_recognised_by_content_whatever_the_name(tmp_path):
    save_file({"w": torch.ones(2)}, str(tmp_path / "weights.bin"))
    assert torch.equal(read_state_dict(tmp_path / "weights.bin")["w"], torch.ones(2))


def test_a_text_file_named_dcm_is_not_a_dicom_file(trained, tmp_path):
    notes = tmp_path / "notes.dcm"
    notes.write_text("patient notes, not a film\n")
    out = tmp_path / "s.csv"
    done = run_ppad("score", "--run", trained, notes, "--out", out, "--quiet", "--device", "cpu")
    assert done.returncode == 2 and f"skipped: {notes}: {NOT_DICOM}" in done.stderr.splitlines(), done.stderr
    assert_cli_error(done, f"none of the 1 inputs could be scored (each file's problem: {out})")
    assert out.read_text().splitlines()[1].endswith(f",{NOT_DICOM}")


def test_the_dicom_readers_word_a_non_dicom_file_alike(tmp_path):
    (tmp_path / "notes.dcm").write_text("patient notes\n")
    with pytest.raises(ImageReadError, match=r"^notes\.dcm: cannot be decoded: not a DICOM file"):
        read_image_bytes(b"patient notes\n", "notes.dcm")  # what `ppad serve` reads an upload with
    with pytest.raises(ImageReadError) as error:
        read_image(tmp_path / "notes.dcm")
    assert error.value.problem == NOT_DICOM
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png: is empty"):
        read_image(tmp_path / "empty.png")


def test_a_draw_that_cannot_fill_validation_is_refused_with_the_numbers(tmp_path):
    pool = [tmp_path / f"{i:03d}.png" for i in range(50)]
    with pytest.raises(DataError) as error:
        draw_few_shot(pool, 40, 16, seed=0)
    assert str(error.value) == (
        "--shots 40 + --val-size 16 need 56 normal training images; "
        "the data set has only 50: lower --shots or --val-size"
    )
    with pytest.raises(DataError) as error:
        draw_few_shot(pool, 60, 0, seed=0)
    assert str(error.value) == "--shots 60 needs 60 normal training images; the data set has only 50: lower --shots"
    with pytest.raises(SettingsError, match="--val-size must be at least 0, got -1"):
        draw_few_shot(pool, 8, -1, seed=0)
    assert len(draw_few_shot(pool, 40, 10, seed=0).validation) == 10  # exactly full: allowed
    assert draw_few_shot(pool, 50, 0, seed=0).validation == []  # --val-size 0 stays possible


def test_too_few_normals_for_shots_and_validation_is_refused_before_the_backbone(demo_data, tmp_path):
    missing = tmp_path / "not-loaded.pt"  # named only if the backbone were loaded first
    args = ["--shots", "22", "--val-size", "4", "--backbone", missing, "--quiet", "--device", "cpu"]
    done = run_ppad("train", "--data", demo_data, "--out", tmp_path / "r", *args)
    assert_cli_error(
        done,
        "--shots 22 + --val-size 4 need 26 normal training images; "
        "the data set has only 24: lower --shots or --val-size",
    )
    assert not (tmp_path / "r").exists()


@needs_zhanglab
def test_real_films_too_few_normals_for_the_default_validation(tmp_path):
    available = len(discover(ZHANGLAB).train_normals)
    shots = available - 41  # the report: --shots 1300 of 1341 normals left 41 for validation, not 64
    args = ["--shots", shots, "--backbone", tmp_path / "not-loaded.pt", "--quiet", "--device", "cpu"]
    done = run_ppad("train", "--data", ZHANGLAB, "--out", tmp_path / "r", *args)
    assert_cli_error(
        done,
        f"--shots {shots} + --val-size 64 need {shots + 64} normal training images; "
        f"the data set has only {available}: lower --shots or --val-size",
    )


def test_val_size_zero_still_trains_on_the_last_epoch(demo_data, tmp_path):
    result = invoke("train", "--data", demo_data, "--out", tmp_path / "r", *TRAIN, "--shots", "24", "--val-size", "0")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["validation"]["normals"] == 0 and len(manifest["split"]["support"]) == 24
