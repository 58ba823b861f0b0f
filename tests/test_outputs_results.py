"""Issue 27, wrong results: a memory without validation, the Python API's evaluation, MediCLIP's score vs its map."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ppad.data import discover
from ppad.errors import SettingsError
from ppad.methods import get_method
from ppad.methods.memory import FIXED_FUSION_WEIGHT, NORMAL_QUANTILE, FewShotMemory
from ppad.runs import load_run
from ppad.scoring import evaluate
from tests.conftest import ZHANGLAB, needs_zhanglab, zhanglab_manifest
from tests.conftest import run_ppad as ppad

API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"
QUICK = ["--backbone", "tiny", "--quiet", "--device", "cpu"]


def test_leave_one_out_distance_is_to_the_nearest_other_support_normal():
    memory = FewShotMemory()
    memory.bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    # cosines: (0, 1) 0.8, (0, 2) 0, (1, 2) 0.6 → nearest other: 1, 0, 1
    torch.testing.assert_close(memory.leave_one_out_distances(), torch.tensor([0.2, 0.2, 0.4]))
    memory.bank = memory.bank[:1]
    with pytest.raises(SettingsError, match="cannot be calibrated"):
        memory.leave_one_out_distances()


@needs_zhanglab
def test_knn_without_validation_calibrates_on_its_support_leave_one_out(tmp_path):
    manifest = tmp_path / "films.csv"
    zhanglab_manifest(manifest, train_normals=12, test_per_class=8)
    run = tmp_path / "knn"
    done = ppad(
        "train", "--method", "knn", "--data", manifest, "--out", run, "--shots", "12", "--val-size", "0", *QUICK
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "calibrated on the support" in line]
    assert len(said) == 1 and "12 support normals, leave-one-out" in said[0], done.stderr
    calibration = json.loads((run / "manifest.json").read_text())["result"]["calibration"]
    assert "leave-one-out" in calibration["calibrated_on"]
    distances = load_run(run).memory.leave_one_out_distances().numpy()
    assert calibration["memory_q95"] == pytest.approx(float(np.quantile(distances, NORMAL_QUANTILE)), abs=1e-6)
    assert calibration["memory_scale"] == pytest.approx(float(distances.std()), abs=1e-6)
    # calibrated: not every film just above 0.5 (the reported symptom: all "abnormal" at 0.505-0.511)
    done = ppad("evaluate", "--run", run, "--data", manifest, "--quiet", "--bootstrap", "20", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    scores = [row["score"] for row in json.loads((run / "evaluation" / "metrics.json").read_text())["test_split"]]
    assert max(scores) - min(scores) > 0.1 and min(scores) < 0.5

    done = ppad(
        "train",
        "--method",
        "knn",
        "--data",
        manifest,
        "--out",
        tmp_path / "one",
        "--shots",
        "1",
        "--val-size",
        "0",
        *QUICK,
    )
    assert done.returncode == 2 and done.stderr.strip().endswith("or two support normals (--shots 2)"), done.stderr


@needs_zhanglab
def test_a_fused_method_without_validation_fixes_its_weight_and_says_so(tmp_path):
    manifest = tmp_path / "films.csv"
    zhanglab_manifest(manifest, train_normals=6)
    run = tmp_path / "fused"
    args = ["--method", "zeroshot+knn", "--data", manifest, "--out", run, "--shots", "6", "--val-size", "0"]
    done = ppad("train", *args, *QUICK)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "calibrated on the support" in line]
    assert len(said) == 1 and f"fusion weight: fixed at {FIXED_FUSION_WEIGHT}" in said[0], done.stderr
    assert json.loads((run / "manifest.json").read_text())["result"]["calibration"]["fusion_weight"] == 0.5
    assert float(load_run(run).fusion_weight) == FIXED_FUSION_WEIGHT


def readme_python_api() -> str:
    """The ``# Python API`` snippet of the documentation's API page."""
    section = API_PAGE.read_text().split("# Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@needs_zhanglab
def test_the_readme_evaluate_leaves_out_the_runs_films_as_the_cli_does(tmp_path):
    """Flat folders: every normal is both a training candidate and a test film, as in the report."""
    data = tmp_path / "flat"
    index = discover(ZHANGLAB)
    for folder, paths in (("normal", index.train_normals[:20]), ("pneumonia", [t.path for t in index.test[-8:]])):
        (data / folder).mkdir(parents=True)
        for path in paths:
            (data / folder / path.name).symlink_to(path)
    run = tmp_path / "s0"
    done = ppad("train", "--method", "knn", "--data", data, "--out", run, "--shots", "8", "--val-size", "4", *QUICK)
    assert done.returncode == 0, done.stderr
    done = ppad("evaluate", "--run", run, "--data", data, "--quiet", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    cli = json.loads((run / "evaluation" / "metrics.json").read_text())

    # the API page's import, load and evaluate lines, as printed (paths swapped for this run's)
    snippet = readme_python_api()
    wanted = ("from ", "model = load_run(", "result = evaluate(", "left_out = ")
    lines = [line for line in snippet.splitlines() if line.startswith(wanted) and "export" not in line]
    assert any(line.startswith("result = evaluate(model, discover(") for line in lines), snippet
    code = "\n".join(lines).replace('"runs/s0"', repr(str(run))).replace('"DATA/"', repr(str(data)))
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the API page's own text
    result = namespace["result"]

    seen = load_run(run).trained_on
    assert len(seen) == 12 and {p.resolve() for p in namespace["left_out"]} == seen
    assert not {p.resolve() for p in result.report.paths} & seen
    assert [str(p) for p in result.report.paths] == [row["path"] for row in cli["test_split"]]
    assert sorted(cli["excluded_as_seen_in_training"]) == sorted(str(p) for p in result.excluded)
    assert json.loads(json.dumps(result.metrics)) == cli["metrics"]


def test_evaluate_refuses_a_model_that_does_not_know_its_films(backbone, demo_data):
    model = get_method("knn").build(backbone)
    with pytest.raises(SettingsError, match="cannot tell which films"):
        evaluate(model, discover(demo_data), progress=False)


@needs_zhanglab
def test_mediclip_score_is_the_maximum_of_its_written_map(tmp_path):
    manifest = tmp_path / "films.csv"
    test = zhanglab_manifest(manifest, train_normals=12, test_per_class=4)
    run = tmp_path / "mediclip"
    args = [
        "--method",
        "mediclip",
        "--data",
        manifest,
        "--out",
        run,
        "--shots",
        "8",
        "--val-size",
        "4",
        "--epochs",
        "1",
    ]
    done = ppad("train", *args, *QUICK)
    assert done.returncode == 0, done.stderr
    maps = tmp_path / "maps"
    films = [str(item.path) for item in test]
    done = ppad("score", "--run", run, *films, "--out", tmp_path / "scores.csv", "--maps", maps, "--quiet")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert len(rows) == len(films) and any(row["lung_fields"] == "trusted" for row in rows), rows
    for row in rows:
        amap = np.load(maps / f"{Path(row['path']).stem}.npy")
        assert float(row["score"]) == pytest.approx(float(amap.max()), abs=1e-5), row["path"]
    # the whole-film map (a display option) does not move the score
    done = ppad(
        "score",
        "--run",
        run,
        *films,
        "--out",
        tmp_path / "whole.csv",
        "--maps",
        tmp_path / "whole",
        "--no-map-lungs",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    assert [r["score"] for r in csv.DictReader(open(tmp_path / "whole.csv"))] == [r["score"] for r in rows]
