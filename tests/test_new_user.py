"""Issue 19, what a new user tripped on: "where" names what drove the score, train and demo say what
validation chose, output folders are made as needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ppad.cli.summaries import fusion_line, training_summary, validation_text
from ppad.scoring.rows import ScoreReport, score_drivers
from tests.conftest import run_ppad

VIEWS = ["left lung", "right lung", "upper lung", "lower lung", "", "memory"]


def test_unfused_scores_name_the_highest_view():
    views = np.array([[0.1, 0.7, 0.2, 0.3, 0.4], [0.9, 0.1, 0.1, 0.1, 0.95]])
    assert score_drivers(VIEWS[:5], views, views.mean(1)) == ["right lung", "whole image"]
    assert score_drivers(["memory"], np.array([[0.3]]), np.array([0.3])) == ["memory"]


def test_a_memory_only_fusion_is_driven_by_the_memory_whatever_the_views():
    views = np.array([[0.1, 0.2, 0.3, 0.4, 0.73, 0.43], [0.9, 0.9, 0.9, 0.9, 0.9, 0.01]])
    scores = views[:, -1]  # w = 0: the score is the memory's probability
    assert score_drivers(VIEWS, views, scores, fusion_weight=0.0) == ["memory", "memory"]


def test_a_fused_score_names_the_larger_weighted_part_then_its_view():
    views = np.array(
        [
            [0.2, 0.3, 0.1, 0.2, 0.2, 0.9],  # prompt 0.2 · 0.5 = 0.10 < memory 0.9 · 0.5
            [0.95, 0.3, 0.1, 0.2, 0.2, 0.1],  # prompt (η rule: 0.95) · 0.5 > memory 0.1 · 0.5
        ]
    )
    prompt = np.array([views[0, :5].mean(), 0.95])
    scores = 0.5 * prompt + 0.5 * views[:, -1]
    assert score_drivers(VIEWS, views, scores, fusion_weight=0.5) == ["memory", "left lung"]
    # the prompt part decides once its weight outweighs the memory's
    assert score_drivers(VIEWS, views[:1], 0.9 * prompt[:1] + 0.1 * views[:1, -1], 0.9) == ["right lung"]


def test_rows_and_json_carry_the_driver_and_the_weight(tmp_path):
    views = np.array([[0.1, 0.2, 0.3, 0.4, 0.73, 0.43]])
    report = ScoreReport([tmp_path / "a.png"], VIEWS, views, views[:, -1], 0.8, fusion_weight=0.0)
    assert report.rows()[0]["top_view"] == "memory"
    document = json.loads(report.write_json(tmp_path / "s.json").read_text())
    assert document["fusion_weight"] == 0.0 and document["images"][0]["top_view"] == "memory"


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        (0.0, "the prompt part gets weight 0: scores come from the memory alone"),
        (1.0, "the memory gets weight 0: scores come from the prompts alone"),
        (0.7, "score = 0.7 × prompt score + 0.3 × memory"),
    ],
)
def test_the_fusion_weight_is_explained(weight, expected):
    assert fusion_line(weight) == f"fusion weight {weight:g} chosen on validation — {expected}"


def test_the_fusion_line_says_what_the_weight_was_chosen_on():
    assert fusion_line(0.5, "fixed").startswith("fusion weight 0.5 fixed (no validation anomalies")
    real = "real abnormal validation films (8) vs held-out normals (8)"
    assert f"chosen on {real} (it leaves 0.5 only for a gain beyond noise)" in fusion_line(0.3, real)


def test_validation_aucs_are_named_for_what_they_measured():
    fused = {
        "best_val_auc": 0.543,
        "prompt_val_auc": 0.5112,
        "calibration": {"fusion_weight": 0.0},
        "history": [{"epoch": 3}],
    }
    assert validation_text(fused) == "validation AUC 0.543 (fused score; prompts alone 0.511)"
    assert validation_text({"best_val_auc": 0.6, "calibration": {}}) == "validation AUC 0.600"
    lines = training_summary("runs/x", "ppad+knn", {**fused, "best_epoch": 3}, "runs/x/prompts.safetensors")
    assert lines == [
        "trained runs/x: kept epoch 3; validation AUC 0.543 (fused score; prompts alone 0.511); "
        "prompts in runs/x/prompts.safetensors",
        "fusion weight 0 chosen on validation — the prompt part gets weight 0: scores come from the memory alone",
    ]


def test_score_makes_the_folder_of_its_out_csv(demo_data, tmp_path):
    run = tmp_path / "run"
    schedule = ["--shots", "8", "--val-size", "4", "--epochs", "1", "--batch-size", "4", "--quiet", "--device", "cpu"]
    done = run_ppad("train", "--backbone", "tiny", "--data", demo_data, "--out", run, *schedule)
    assert done.returncode == 0, done.stderr
    film = sorted((demo_data / "test").rglob("*.png"))[0]
    out = tmp_path / "new" / "folder" / "scores.csv"
    done = run_ppad("score", "--run", run, film, "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(film))
