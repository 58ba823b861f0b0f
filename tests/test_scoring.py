from __future__ import annotations

import numpy as np
import pytest
import torch

from ppad.methods import PPADConfig, PPADModel
from ppad.methods.inference import predict_views
from ppad.metrics import bootstrap_auc_ci, classification_metrics
from ppad.scoring import aggregate_views


def test_rule_takes_the_max_only_above_eta():
    probabilities = np.array(
        [
            [0.90, 0.10, 0.20, 0.30, 0.40],  # max 0.9 > 0.8 → 0.9
            [0.50, 0.60, 0.70, 0.40, 0.30],  # max 0.7 → mean 0.5
            [0.80, 0.80, 0.80, 0.80, 0.30],  # max exactly η → mean (strictly greater needed)
        ]
    )
    np.testing.assert_allclose(aggregate_views(probabilities), [0.9, 0.5, 0.7])
    np.testing.assert_allclose(aggregate_views(probabilities, eta=0.95), probabilities.mean(axis=1))
    with pytest.raises(ValueError):
        aggregate_views(np.array([0.1, 0.2]))


def test_metrics_match_hand_computed_values():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.9])
    metrics = classification_metrics(labels, scores)
    # pairs (pos, neg): (0.4,0.1)✓ (0.4,0.6)✗ (0.9,0.1)✓ (0.9,0.6)✓ → 3/4
    assert metrics["auc"] == pytest.approx(0.75)
    # ranking 0.9(+) 0.6(-) 0.4(+) 0.1(-): AP = ½·1 + ½·⅔
    assert metrics["ap"] == pytest.approx(0.5 + 1 / 3)
    # predictions at 0.5: [0, 1, 0, 1] → 2 of 4 right; TP 1, FP 1, FN 1 → F1 = ½
    assert metrics["acc"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(0.5)
    assert (metrics["n_normal"], metrics["n_abnormal"]) == (2, 2)
    with pytest.raises(ValueError, match="both"):
        classification_metrics(np.array([1, 1]), np.array([0.2, 0.3]))


def test_bootstrap_interval_brackets_the_auc_and_is_seeded():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    scores = rng.normal(size=200) + labels
    auc = classification_metrics(labels, scores)["auc"]
    low, high = bootstrap_auc_ci(labels, scores, n_resamples=500, seed=3)
    assert low < auc < high and high - low < 0.2
    assert (low, high) == bootstrap_auc_ci(labels, scores, n_resamples=500, seed=3)
    assert bootstrap_auc_ci(labels, labels + 0.0, n_resamples=50) == (1.0, 1.0)


@pytest.fixture
def model(backbone):
    torch.manual_seed(0)
    model = PPADModel(backbone, PPADConfig(n_ctx=4))
    with torch.no_grad():
        model.image_prompt.values.normal_()
        model.text_prompt.ctx.normal_()
    return model.eval()


def test_batched_views_equal_one_view_at_a_time(model):
    images = np.random.default_rng(0).random((3, 224, 224)).astype(np.float32)
    batched = predict_views(model, images, batch_size=2)
    x = model.preprocessing.normalize(torch.from_numpy(images))
    with torch.no_grad():
        single = np.stack(
            [model.class_logits(x, torch.full((3,), r)).softmax(-1)[:, 1].numpy() for r in range(len(model.regions))],
            axis=1,
        )
    assert batched.shape == (3, 5)
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_text_features_are_computed_once_per_scoring_call(model, monkeypatch):
    calls = []
    original = model.text_prompt.text_features
    monkeypatch.setattr(model.text_prompt, "text_features", lambda backbone: calls.append(1) or original(backbone))
    predict_views(model, np.zeros((5, 224, 224), dtype=np.float32), batch_size=2)  # three batches
    assert len(calls) == 1


def test_score_files_use_one_float_format_and_one_name_per_view(tmp_path):
    import csv
    import json
    from pathlib import Path

    from ppad.data import ImageReadError
    from ppad.scoring import ScoreReport

    views = np.array([[0.1, 1 / 3, 0.25, 2 / 3, 0.123456789]], dtype=np.float64)
    report = ScoreReport(
        paths=[Path("a.png")],
        view_names=["left lung", "right lung", "upper lung", "lower lung", ""],
        view_probabilities=views,
        scores=np.array([1 / 7]),
        eta=0.8,
        failures=[ImageReadError("b.png", "no such file")],
    )
    with open(report.write_csv(tmp_path / "s.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    floats = [value for key, value in rows[0].items() if key == "score" or key.startswith("p_")]
    assert floats == ["0.142857", "0.100000", "0.333333", "0.250000", "0.666667", "0.123457"]
    assert rows[1]["path"] == "b.png" and rows[1]["error"] == "no such file"
    document = json.loads(report.write_json(tmp_path / "s.json").read_text())
    assert document["views"][-1] == "whole image" and "p_whole_image" in rows[0]
    assert document["images"][0]["top_view"] == "lower lung"
