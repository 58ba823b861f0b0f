"""The shipped backbone end to end on real ZhangLab films, through the command line as a user runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import NIH, SharedRun, needs_zhanglab, zhanglab_manifest
from tests.conftest import run_ppad as ppad


def check_calibration_and_evaluation(shared: SharedRun, method: str) -> dict:
    """The run's calibration (what training printed for a fused method) and its evaluation's counts."""
    config = json.loads((shared.run / "config.json").read_text())
    assert config["backbone"]["source"] == "cxr-lite" and config["method"] == method
    result = json.loads((shared.run / "manifest.json").read_text())["result"]
    calibration = result["calibration"]
    assert calibration["memory_scale"] > 0
    if method != "knn":  # issue 19: the fusion weight and both validation AUCs, each named
        weight = calibration["fusion_weight"]
        chosen_on = calibration["fusion_chosen_on"]  # issue 26: what the weight was chosen on, said
        assert chosen_on.endswith("vs held-out normals (8)")
        assert f"fusion weight {weight:g} chosen on {chosen_on}" in shared.trained.stdout
        assert f"validation AUC {result['best_val_auc']:.3f} (fused score; prompts alone" in shared.trained.stdout
    metrics = json.loads((shared.run / "evaluation" / "metrics.json").read_text())["metrics"]
    assert metrics["n_normal"] == 10 and metrics["n_abnormal"] == 10
    if method == "knn":  # pneumonia lies farther from the support normals than normal films do
        assert metrics["auc"] > 0.6
    return calibration


def check_scores(shared: SharedRun, method: str, calibration: dict, tmp_path: Path) -> None:
    """Two films and a broken one: the score is the validation-weighted fusion of the η rule and the memory."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    films = (shared.test[0].path, shared.test[-1].path, broken)
    done = ppad("score", "--run", shared.run, *films, "--out", tmp_path / "s.csv", "--quiet")
    assert done.returncode == 0 and "broken.jpg" in done.stderr
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert rows[0]["p_memory"] != "" and rows[-1]["error"]
    for row in rows[:2]:
        memory = float(row["p_memory"])
        expected = memory
        if method != "knn":
            views = np.array([float(v) for k, v in row.items() if k.startswith("p_") and k != "p_memory"])
            prompt = views.max() if views.max() > 0.8 else views.mean()
            weight = calibration["fusion_weight"]
            expected = weight * prompt + (1 - weight) * memory
        assert float(row["score"]) == pytest.approx(expected, abs=2e-6)
        # "where" names what drove the score: the memory when its weighted part is the larger
        if method != "knn" and (1 - weight) * memory >= weight * prompt:
            assert row["top_view"] == "memory"
        elif method != "knn":
            names = [k for k in row if k.startswith("p_") and k != "p_memory"]
            assert row["top_view"] == max(names, key=lambda k: float(row[k]))[2:].replace("_", " ")
        else:
            assert row["top_view"] == "memory"
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["fusion_weight"] == (None if method == "knn" else calibration["fusion_weight"])


def test_a_fused_method_on_lung_fields_evaluates_and_scores_real_films(zhanglab_fused_run, tmp_path):
    """The session's shared ``ppad+knn`` run (trained and evaluated through the CLI by its fixture)."""
    shared = zhanglab_fused_run
    check_scores(shared, "ppad+knn", check_calibration_and_evaluation(shared, "ppad+knn"), tmp_path)


def test_knn_evaluates_scores_maps_and_localizes_real_films(zhanglab_knn_run, tmp_path):
    """The session's shared knn run (trained and evaluated through the CLI by its fixture)."""
    shared = zhanglab_knn_run
    check_scores(shared, "knn", check_calibration_and_evaluation(shared, "knn"), tmp_path)
    test = shared.test
    maps = tmp_path / "maps"
    done = ppad("score", "--run", shared.run, test[0].path, "--out", tmp_path / "m.csv", "--maps", maps, "--quiet")
    assert done.returncode == 0, done.stderr
    amap = np.load(maps / f"{test[0].path.stem}.npy")
    with Image.open(test[0].path) as film, Image.open(maps / f"{test[0].path.stem}_overlay.png") as overlay:
        assert amap.shape == (film.height, film.width) and np.isfinite(amap).all() and amap.std() > 0
        assert overlay.mode == "RGB" and overlay.width >= film.width

    if not (NIH / "boxes.csv").is_file():
        pytest.skip(f"no radiologist boxes at {NIH}")
    out = tmp_path / "localization"
    done = ppad(
        "evaluate", "--run", shared.run, "--boxes", NIH / "boxes.csv", "--out", out, "--quiet", "--device", "cpu"
    )
    assert done.returncode == 0, done.stderr
    localization = json.loads((out / "localization.json").read_text())
    assert localization["n_images"] == 44 and localization["n_boxes"] == 49
    scores = localization["scores"]
    assert set(scores) == {"memory", "centre prior", "lung prior", "uniform random"}
    assert abs(scores["uniform random"]["pixel_auc"] - 0.5) < 0.05
    assert scores["centre prior"]["pixel_auc"] > scores["uniform random"]["pixel_auc"]
    assert "memory" in done.stdout and "centre prior" in done.stdout


@needs_zhanglab
def test_bench_encodes_each_real_test_film_once_per_kind(tmp_path):
    """`ppad bench` on real films: the second seed of each frozen method reuses every test film's
    tower output, and the cached table still equals each cell's own metrics file."""
    manifest = tmp_path / "films.csv"
    test = zhanglab_manifest(manifest, train_normals=16, test_per_class=5)
    out = tmp_path / "bench"
    schedule = ["--shots", "8", "--val-size", "4", "--epochs", "1", "--batch-size", "8", "--quiet", "--device", "cpu"]
    done = ppad("bench", "--data", manifest, "--out", out, "--methods", "knn,ppad-text", "--seeds", "0,1", *schedule)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["backbone"]["source"] == "cxr-lite"
    assert results["feature_cache"]["hits"] >= 2 * len(test)  # seed 1's test films, for each method
    for run in results["runs"]:
        cell = json.loads(
            (out / "runs" / f"{run['method']}__sas" / f"seed{run['seed']}" / "evaluation" / "metrics.json").read_text()
        )
        assert run["metrics"] == cell["metrics"] and cell["metrics"]["n_normal"] == cell["metrics"]["n_abnormal"] == 5
