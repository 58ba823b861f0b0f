"""`ppad pretrain` on real films with reports and studies, in one and in two processes, killed and resumed."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import NIH, SHARED_DATA, needs_nih

NOTES = SHARED_DATA / "cxr-notes"
needs_notes = pytest.mark.skipif(
    not (NOTES / "labels.csv").is_file(), reason=f"real cxr-notes films not found at {NOTES}"
)
SMALL = ("--batch-size", "8", "--views", "2", "--text-pairs", "2", "--quiet", "--device", "cpu")


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _absolute(rows: list[dict], folder: Path) -> list[dict]:
    return [{**row, "image": str(folder / row["image"])} for row in rows]


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    """Small real tables: NIH labels (24 train, 8 + 8 val) and cxr-notes reports with studies."""
    folder = tmp_path_factory.mktemp("tables")
    nih = list(csv.DictReader(open(NIH / "labels.csv")))
    val = [r for r in nih if r["split"] == "val"]
    picked = [r for r in nih if r["split"] == "train"][:24] + [r for r in val if r["findings"] == "No Finding"][:8]
    picked += [r for r in val if "Pneumonia" in r["findings"]][:8]
    notes = list(csv.DictReader(open(NOTES / "labels.csv")))
    sizes = Counter(r["study"] for r in notes if r["split"] == "train")
    several = [study for study, size in sizes.items() if size > 1][:5]
    train = [r for r in notes if r["study"] in several] + [r for r in notes if sizes[r["study"]] == 1][:11]
    val = [r for r in notes if r["split"] == "val"]
    train += [r for r in val if r["findings"] == "No Finding"] + [r for r in val if r["findings"] != "No Finding"][:7]
    return {
        "nih": _write(folder / "nih" / "labels.csv", _absolute(picked, NIH)),
        "notes": _write(folder / "notes" / "labels.csv", _absolute(train, NOTES)),
    }


def _pretrain(out: Path, *options: str, data=(), popen: bool = False):
    command = [sys.executable, "-m", "ppad.cli.main", "pretrain", "--out", str(out), *options]
    for table in data:
        command += ["--data", str(table.parent)]
    if popen:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_processes(tables, tmp_path_factory) -> Path:
    """The mixed run (NIH labels + cxr-notes reports and studies) in 2 CPU processes."""
    out = tmp_path_factory.mktemp("two") / "pre"
    done = _pretrain(out, "--devices", "2", "--epochs", "2", *SMALL, data=(tables["nih"], tables["notes"]))
    assert done.returncode == 0, done.stderr
    assert "kept epoch" in done.stdout and done.stdout.count("backbone →") == 1  # rank 0 alone prints
    return out


@needs_nih
@needs_notes
def test_a_mixed_run_in_two_cpu_processes_records_them_and_ppad_train_loads_it(two_processes, demo_data, tmp_path):
    record = json.loads((two_processes / "backbone.json").read_text())
    assert record["processes"] == {"count": 2, "nodes": 1, "backend": "gloo", "device": "cpu"}
    nih, notes = record["data"]["tables"]
    assert nih["columns"] == {"labels": "findings", "text": [], "study": None}
    assert nih["label_only_films"] == nih["train_films"] == nih["studies"] == 24 and nih["report_films"] == 0
    assert notes["columns"] == {"labels": "findings", "text": ["report"], "study": "study"}
    assert notes["report_films"] == notes["train_films"] > notes["studies"] and notes["multi_film_studies"] == 5
    assert 0 < notes["reports"] <= notes["studies"] and record["data"]["epoch_draws"].startswith("studies")
    assert record["settings"]["precision"] == "32" and record["settings"]["accumulate"] == 1
    assert not list(two_processes.glob("*.tmp")) and {p.name for p in two_processes.iterdir()} >= {
        "backbone.safetensors", "backbone.json", "manifest.json", "pretrain_state.pt", "cache"}  # fmt: skip
    run = tmp_path / "run"
    command = [sys.executable, "-m", "ppad.cli.main", "train", "--backbone", str(two_processes), "--method", "zeroshot"]
    done = subprocess.run(
        [*command, "--data", str(demo_data), "--out", str(run), "--shots", "8", "--val-size", "4", "--quiet", "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert str(two_processes.resolve()) in json.dumps(manifest)


@needs_nih
@needs_notes
def test_one_process_with_the_same_global_batch_gives_the_same_weights(two_processes, tables, tmp_path):
    """Same draws, same global batches: only float rounding differs (the sums of the gradient
    all-reduce and of the gathered logits run in another order, and the tail sees half batches).
    AdamW divides each step by the root of the squared gradients' average, so where a gradient is
    ~0 its rounding can flip the sign of the step: such a weight can move by up to lr per step.
    Hence: the losses agree to 1e-5, 99.5 % of the weights to 1e-5, all within lr × steps."""
    one = tmp_path / "one"
    done = _pretrain(one, "--epochs", "2", *SMALL, data=(tables["nih"], tables["notes"]))
    assert done.returncode == 0, done.stderr
    records = [json.loads((out / "backbone.json").read_text()) for out in (one, two_processes)]
    assert records[0]["processes"]["count"] == 1
    for epochs in zip(records[0]["history"], records[1]["history"]):
        assert epochs[0]["loss"] == pytest.approx(epochs[1]["loss"], rel=1e-5)
    weights = [load_file(out / "backbone.safetensors") for out in (one, two_processes)]
    steps = 2 * -(-(24 + records[0]["data"]["tables"][1]["studies"]) // 8)
    gaps = torch.cat([(weights[0][k].float() - weights[1][k].float()).abs().flatten() for k in weights[0]])
    assert (gaps <= 1e-5).float().mean() >= 0.995 and gaps.max() <= 1e-3 * steps


@needs_notes
def test_a_report_table_killed_mid_training_resumes_with_another_number_of_processes(tables, tmp_path):
    """cxr-notes alone (reports, studies), bf16-mixed, 2 global batches a step, a loader worker."""
    out, state = tmp_path / "pre", tmp_path / "pre" / "pretrain_state.pt"
    options = ("--epochs", "4", "--precision", "bf16-mixed", "--accumulate", "2", "--workers", "1", *SMALL)
    running = _pretrain(out, "--devices", "2", *options, data=(tables["notes"],), popen=True)
    deadline = time.monotonic() + 300
    while not state.is_file() and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(running.pid, signal.SIGKILL)  # the launcher, mid-epoch: its processes go with it
    running.wait()
    assert state.is_file(), running.stderr.read().decode()
    time.sleep(1)  # were a process still training, it would write its next epoch meanwhile
    saved = torch.load(state, weights_only=True)
    assert 1 <= saved["epoch"] < 4 and not (out / "backbone.safetensors").exists()
    resumed = _pretrain(out, *options, data=(tables["notes"],))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} at epoch {saved['epoch'] + 1} of 4" in resumed.stderr
    assert "encoding" not in resumed.stderr  # the cache the two processes wrote is read, not rebuilt
    record = json.loads((out / "backbone.json").read_text())
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3, 4] and record["processes"]["count"] == 1
    assert record["history"][: saved["epoch"]] == saved["history"]
    assert record["settings"]["precision"] == "bf16-mixed" and record["settings"]["accumulate"] == 2
    (notes,) = record["data"]["tables"]
    rows = [row for row in csv.DictReader(open(tables["notes"])) if row["split"] == "train"]
    assert notes["report_films"] == notes["train_films"] == len(rows) and notes["label_only_films"] == 0
    assert notes["multi_film_studies"] == 5 and notes["studies"] < notes["train_films"]
    assert all(0 < h["loss"] < 100 for h in record["history"])  # finite in bf16
