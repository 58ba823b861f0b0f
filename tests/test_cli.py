from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from ppad.backbones import get_architecture
from ppad.cli.main import cli
from ppad.data import discover
from tests.conftest import SHARED_DATA

TRAIN_ARGS = [
    "--shots",
    "8",
    "--epochs",
    "2",
    "--batch-size",
    "4",
    "--val-size",
    "4",
    "--n-ctx",
    "4",
    "--quiet",
    "--device",
    "cpu",
]


def invoke(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def check_train_score_evaluate(backbone: str, data: Path, run_dir: Path, extra: list[str] = ()) -> dict:
    result = invoke("train", "--backbone", backbone, "--data", data, "--out", run_dir, *TRAIN_ARGS, *extra)
    assert result.exit_code == 0, result.output
    assert "validation AUC" in result.output
    for name in ("config.json", "manifest.json", "prompts.safetensors", "prompts_last.safetensors", "train_state.pt"):
        assert (run_dir / name).is_file(), name

    index = discover(data)
    bad = run_dir.parent / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    images = [item.path for item in index.test[:3]]
    result = invoke("score", "--run", run_dir, *images, bad, "--out", run_dir / "s.csv", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    rows = read_csv(run_dir / "s.csv")
    assert [r["path"] for r in rows] == [str(p) for p in images] + [str(bad)]
    assert rows[-1]["error"] and "broken.png" in result.output
    assert all(0 <= float(r["p_left_lung"]) <= 1 and 0 <= float(r["score"]) <= 1 for r in rows[:3])
    views = ["left lung", "right lung", "upper lung", "lower lung", "whole image"]
    for r in rows[:3]:  # the view with the highest abnormal probability is named
        probabilities = [float(r["p_" + v.replace(" ", "_")]) for v in views]
        assert r["top_view"] == views[probabilities.index(max(probabilities))]
    assert json.loads((run_dir / "s.json").read_text())["unreadable"][0]["path"] == str(bad)

    result = invoke("evaluate", "--run", run_dir, "--data", data, "--quiet", "--device", "cpu", "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    assert "AUC" in result.output
    document = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    labels = {row["path"]: row["label"] for row in document["test_split"]}
    scored = json.loads((run_dir / "evaluation" / "scores.json").read_text())["images"]  # full precision
    y = np.array([labels[row["path"]] for row in scored])
    s = np.array([row["score"] for row in scored])
    assert document["metrics"]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert len(read_csv(run_dir / "evaluation" / "scores.csv")) == len(scored)
    assert document["seed"] == 0 and len(scored) == len(document["test_split"])
    return document


def test_train_score_evaluate_with_the_tiny_backbone(demo_data, tmp_path):
    document = check_train_score_evaluate("tiny", demo_data, tmp_path / "run")
    assert document["metrics"]["n_normal"] == 10 and document["metrics"]["n_abnormal"] == 10


def test_flat_layout_evaluation_leaves_out_training_files(demo_data, tmp_path):
    flat = tmp_path / "flat"
    shutil.copytree(demo_data / "train" / "normal", flat / "normal")
    shutil.copytree(demo_data / "test" / "abnormal", flat / "abnormal")
    document = check_train_score_evaluate("tiny", flat, tmp_path / "run")
    assert len(document["excluded_as_seen_in_training"]) == 12  # 8 support + 4 validation
    seen = set(json.loads((tmp_path / "run" / "manifest.json").read_text())["split"]["support"])
    assert not seen & {row["path"] for row in document["test_split"]}


def test_train_score_evaluate_with_an_openai_format_vit_b32(demo_data, tmp_path):
    """The CheXzero path: an OpenAI-format ViT-B/32 state dict (random weights here)."""
    weights = tmp_path / "vit_b32.pt"
    torch.save(get_architecture("ViT-B/32").build_random(seed=1).state_dict(), weights)
    check_train_score_evaluate(str(weights), demo_data, tmp_path / "run", ["--epochs", "1"])


def test_demo_runs_offline_and_detects(tmp_path):
    """The README's set-up command (`ppad demo`), as a user runs it: a subprocess on the shipped backbone."""
    command = [
        sys.executable,
        "-m",
        "ppad.cli.main",
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "--epochs",
        "2",
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    from ppad.methods.defaults import default_detector

    default = default_detector("cxr-lite")
    assert f"model: {default.method}" in done.stdout and "cxr-lite's validated default" in done.stdout
    printed = float(re.search(r"validation AUC ([0-9.]+)", done.stdout).group(1))
    manifest = json.loads((tmp_path / "demo" / "run" / "manifest.json").read_text())
    assert manifest["method"] == default.method
    assert printed == pytest.approx(manifest["result"]["best_val_auc"], abs=5e-4)
    assert printed >= 0.7  # detects the demo's validation anomalies, not chance
    metrics = json.loads((tmp_path / "demo" / "run" / "evaluation" / "metrics.json").read_text())["metrics"]
    assert metrics["n_normal"] == 40 and metrics["n_abnormal"] == 40 and metrics["auc"] > 0.6


def test_user_errors_are_one_line_not_a_traceback(demo_data, tmp_path):
    result = invoke(
        "train",
        "--backbone",
        tmp_path / "missing.pt",
        "--data",
        demo_data,
        "--out",
        tmp_path / "r",
        "--shots",
        "8",
        "--val-size",
        "4",
        "--quiet",
    )
    assert result.exit_code == 2
    assert "missing.pt: no such file" in result.output and "Traceback" not in result.output
    result = invoke("train", "--data", demo_data, "--out", tmp_path / "r", "--shots", "500", "--quiet")
    assert result.exit_code == 2 and "only 24" in result.output
    result = invoke("score", "--run", tmp_path, "x.png")
    assert result.exit_code == 2 and "not a ppad run folder" in result.output


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no real chest X-rays at {SHARED_DATA} (see ../shared/README.md)")
def test_real_images_end_to_end(tmp_path):
    data = next((p for p in [SHARED_DATA, *sorted(SHARED_DATA.iterdir())] if p.is_dir() and _has_layout(p)), None)
    if data is None:
        pytest.skip(f"{SHARED_DATA} holds no folder in a supported layout")
    check_train_score_evaluate("tiny", data, tmp_path / "run", ["--epochs", "1"])


def _has_layout(path: Path) -> bool:
    try:
        index = discover(path)
    except ValueError:
        return False
    return len(index.train_normals) >= 12 and len({item.label for item in index.test}) == 2


@pytest.mark.parametrize("method, extra", [("zeroshot", ["--template", "chexzero"]), ("maple", ["--synthesis", "fpi"])])
def test_baselines_train_and_score_from_the_command_line(demo_data, tmp_path, method, extra):
    run_dir = tmp_path / method
    result = invoke(
        "train", "--method", method, "--backbone", "tiny", "--data", demo_data, "--out", run_dir, *TRAIN_ARGS, *extra
    )
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["method"] == method
    if method == "zeroshot":
        assert config["model"]["template"] == "chexzero" and "nothing to train" in result.output
    else:
        assert (
            config["model"]["n_ctx"] == 4
            and json.loads((run_dir / "manifest.json").read_text())["settings"]["synthesis"] == "fpi"
        )
    image = discover(demo_data).test[0].path
    assert invoke("score", "--run", run_dir, image, "--quiet").exit_code == 0
    row = read_csv(run_dir / "scores.csv")[0]
    assert set(row) == {"path", "score", "prediction", "top_view", "p_whole_image", "error"}
    assert row["top_view"] == "whole image"
    assert float(row["score"]) == pytest.approx(float(row["p_whole_image"]), abs=1e-6)
