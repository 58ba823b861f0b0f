"""The error boundary, input by input: the README's table of bad inputs, each checked here.

A user error prints one line naming the file or option and exits 2; a bug keeps its traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import ppad.cli.score as score_module
from ppad.cli.main import cli
from ppad.data import discover

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

    monkeypatch.setattr(score_module, "score_archive", broken)
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
