from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import ppad.bench.harness as harness
import ppad.training.run as training_run
from ppad.bench import plan, run_bench
from ppad.cli.main import cli
from ppad.runs import RunConflictError
from ppad.training import TrainSettings

SMALL = TrainSettings(shots=8, epochs=2, batch_size=4, validation_size=4)


@pytest.fixture(scope="module")
def bench(tmp_path_factory, demo_data):
    out = tmp_path_factory.mktemp("bench")
    results = run_bench(
        demo_data, out, "tiny", ["zeroshot", "coop", "ppad"], [0, 1], settings=SMALL, device="cpu", progress=False
    )
    return out, results


def _table_rows(text: str) -> dict[str, list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


def test_table_numbers_equal_the_per_run_metrics_files(bench):
    out, results = bench
    table = _table_rows((out / "table.md").read_text())
    assert list(table) == ["zeroshot", "coop", "ppad"]
    for method, cells in table.items():
        runs = [
            json.loads((out / "runs" / f"{method}__sas" / f"seed{s}" / "evaluation" / "metrics.json").read_text())[
                "metrics"
            ]
            for s in (0, 1)
        ]
        for metric, cell in zip(("acc", "auc", "f1", "ap"), cells):
            values = np.array([run[metric] for run in runs]) * 100
            assert cell == f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"
    assert len(results["runs"]) == 6
    for run in results["runs"]:
        on_disk = json.loads(
            (out / "runs" / f"{run['method']}__sas" / f"seed{run['seed']}" / "evaluation" / "metrics.json").read_text()
        )
        assert run["metrics"] == on_disk["metrics"]


def test_seeds_draw_different_support_sets_and_zero_shot_does_not_train(bench):
    out, _ = bench
    supports = [
        json.loads((out / "runs" / "ppad__sas" / f"seed{s}" / "manifest.json").read_text())["split"]["support"]
        for s in (0, 1)
    ]
    assert supports[0] != supports[1]
    zeroshot = json.loads((out / "runs" / "zeroshot__sas" / "seed0" / "manifest.json").read_text())
    assert zeroshot["result"]["history"] == [] and zeroshot["method"] == "zeroshot"


def test_roc_png_is_written(bench):
    out, _ = bench
    with Image.open(out / "roc.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_finished_cells_are_not_recomputed(bench, demo_data, monkeypatch):
    out, results = bench
    monkeypatch.setattr(training_run, "fit", lambda *a, **k: pytest.fail("a finished cell was trained again"))
    monkeypatch.setattr(harness, "evaluate_run", lambda *a, **k: pytest.fail("a finished cell was evaluated again"))
    again = run_bench(
        demo_data, out, "tiny", ["zeroshot", "coop", "ppad"], [0, 1], settings=SMALL, device="cpu", progress=False
    )
    assert again["summary"] == results["summary"]


def test_cells_made_with_other_settings_are_refused_not_reused(bench, demo_data):
    out, _ = bench
    before = (out / "results.json").read_text()
    longer = replace(SMALL, epochs=3)
    with pytest.raises(RunConflictError, match=r"zeroshot__sas/seed0.*settings\.epochs"):
        run_bench(demo_data, out, "tiny", ["zeroshot", "coop"], [0], settings=longer, device="cpu", progress=False)
    assert (out / "results.json").read_text() == before  # nothing claims the new settings


BENCH_ARGS = [
    "--backbone",
    "tiny",
    "--methods",
    "zeroshot,coop,ppad",
    "--seeds",
    "0,1",
    "--shots",
    "8",
    "--epochs",
    "2",
]
BENCH_ARGS += ["--batch-size", "4", "--val-size", "4", "--quiet", "--device", "cpu"]


def test_killed_bench_resumes_to_the_uninterrupted_table(bench, demo_data, tmp_path):
    out, _ = bench
    command = [sys.executable, "-m", "ppad.cli.main", "bench", "--data", str(demo_data), "--out", str(tmp_path)]
    process = subprocess.Popen([*command, *BENCH_ARGS], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_cell = tmp_path / "runs" / "coop__sas" / "seed0" / "prompts_last.safetensors"
    deadline = time.monotonic() + 300
    while not first_cell.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (tmp_path / "table.md").exists(), "the bench was not interrupted"
    again = subprocess.run([*command, *BENCH_ARGS], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "table.md").read_text() == (out / "table.md").read_text()


def test_unknown_method_fails_before_any_work():
    with pytest.raises(KeyError, match="unknown method"):
        plan(["ppad", "nope"], ["sas"], [0])


def test_ablation_rows_from_the_command_line(demo_data, tmp_path):
    args = [
        "bench",
        "--data",
        str(demo_data),
        "--out",
        str(tmp_path / "b"),
        "--ablation",
        "prompts",
        "--seeds",
        "0",
        "--shots",
        "8",
        "--epochs",
        "1",
        "--val-size",
        "4",
        "--quiet",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert list(_table_rows((tmp_path / "b" / "table.md").read_text())) == ["coop", "ppad-text", "ppad"]


def test_synth_preview_draws_every_method(tmp_path):
    result = CliRunner().invoke(
        cli,
        ["synth-preview", "--out", str(tmp_path / "p.png"), "--methods", "sas,fpi,pii", "--seeds", "2", "--size", "64"],
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "p.png") as image:
        assert image.size == (130 + 2 * 68, 4 * 68)  # original + 3 methods
    result = CliRunner().invoke(cli, ["synth-preview", "--out", str(tmp_path / "q.png"), "--methods", "nope"])
    assert result.exit_code == 2 and "unknown synthesis" in result.output


def test_a_resumed_bench_says_how_many_cells_are_finished(bench, demo_data, tmp_path, caplog):
    import logging
    import shutil

    out, _ = bench
    resumed = shutil.copytree(out, tmp_path / "bench")
    (resumed / "runs" / "ppad__sas" / "seed1" / "evaluation" / "metrics.json").unlink()  # killed before evaluating
    caplog.set_level(logging.INFO, logger="ppad")
    result = CliRunner().invoke(cli, ["bench", "--data", str(demo_data), "--out", str(resumed), *BENCH_ARGS])
    assert result.exit_code == 0, result.output
    assert f"resuming {resumed}: 5 of 6 cells already finished" in caplog.messages
    assert (resumed / "table.md").read_text() == (out / "table.md").read_text()
