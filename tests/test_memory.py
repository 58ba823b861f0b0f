"""The few-shot visual memory (knn) and the fused <method>+knn variants."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from sklearn.metrics import roc_auc_score

from ppad.bench import run_bench
from ppad.data import discover, load_images
from ppad.methods import get_method
from ppad.methods.inference import predict_views
from ppad.methods.memory import FIXED_FUSION_WEIGHT, FUSION_WEIGHTS, NORMAL_QUANTILE
from ppad.runs import PROMPT_FILES, load_run
from ppad.training import TrainSettings, train_run

SMALL = TrainSettings(shots=8, epochs=2, batch_size=4, validation_size=6, seed=2)


@pytest.fixture(scope="module")
def images(demo_data, backbone):
    index = discover(demo_data)
    preprocessing = get_method("knn").build(backbone).preprocessing
    normals = load_images(index.train_normals[:12], preprocessing, progress=False).images
    abnormal = load_images([i.path for i in index.test if i.label][:6], preprocessing, progress=False).images
    return normals, abnormal


def _features(model, images):
    with torch.no_grad():
        return F.normalize(model.backbone.encode_image(model.preprocessing.normalize(torch.from_numpy(images))), dim=-1)


def test_knn_is_the_distance_to_the_nearest_support_normal(backbone, images):
    normals, abnormal = images
    model = get_method("knn").build(backbone)
    model.prepare(normals[:8])
    assert model.memory.bank.shape == (8, 32)
    held_out = normals[8:]
    set_by = model.calibrate(np.concatenate([held_out, abnormal]), np.r_[np.zeros(4), np.ones(6)].astype(int))
    distances = 1 - (_features(model, held_out) @ _features(model, normals[:8]).T).max(dim=1).values.numpy()
    assert set_by["memory_q95"] == pytest.approx(float(np.quantile(distances, NORMAL_QUANTILE)), abs=1e-6)
    assert set_by["memory_scale"] == pytest.approx(float(distances.std()), abs=1e-6)
    views = predict_views(model, np.concatenate([normals[:2], abnormal[:2]]))
    assert views.shape == (4, 1)
    assert views[:2, 0].max() < 0.5  # a support image is at distance 0, below every held-out normal's q95
    expected = 1 / (1 + np.exp(-((1 - 1.0) - set_by["memory_q95"]) / set_by["memory_scale"]))
    assert views[0, 0] == pytest.approx(expected, abs=1e-4)
    assert np.array_equal(model.aggregate(views), views[:, 0])


def test_an_empty_memory_is_a_clear_error(backbone):
    model = get_method("knn").build(backbone)
    with pytest.raises(ValueError, match="memory is empty"):
        predict_views(model, np.zeros((1, 224, 224), dtype=np.float32))


def test_fusion_weight_is_chosen_on_validation(backbone, images):
    normals, abnormal = images
    torch.manual_seed(0)
    model = get_method("coop+knn").build(backbone)
    model.prepare(normals[:8])
    validation = np.concatenate([normals[8:], abnormal])
    labels = np.r_[np.zeros(4), np.ones(6)].astype(int)
    chosen = model.calibrate(validation, labels)
    views = predict_views(model, validation).astype(np.float64)
    prompt = views[:, 0]  # coop: one view, the η rule keeps it
    aucs = [roc_auc_score(labels, w * prompt + (1 - w) * views[:, 1]) for w in FUSION_WEIGHTS]
    best = FUSION_WEIGHTS[int(np.argmax(aucs))]  # kept only for a gain beyond noise (test_val_abnormal.py)
    assert chosen["fusion_val_aucs"] == pytest.approx({f"{w:g}": auc for w, auc in zip(FUSION_WEIGHTS, aucs)})
    moved = chosen["fusion_gain"] > chosen["fusion_gain_se"]
    assert chosen["fusion_weight"] == (best if moved else FIXED_FUSION_WEIGHT)
    assert chosen["fusion_val_auc"] == pytest.approx(aucs[FUSION_WEIGHTS.index(chosen["fusion_weight"])])
    w = chosen["fusion_weight"]
    np.testing.assert_allclose(model.aggregate(views), w * prompt + (1 - w) * views[:, 1], atol=1e-6)


def test_knn_run_round_trips_through_its_folder(backbone, demo_data, tmp_path):
    manifest = train_run(demo_data, tmp_path / "knn", backbone, settings=SMALL, method="knn", progress=False)
    assert manifest.result["history"] == [] and "memory_q95" in manifest.result["calibration"]
    model = load_run(tmp_path / "knn", backbone)
    assert model.memory.bank.shape == (SMALL.shots, 32)
    support = load_images([p for p in manifest.identity.split["support"]], model.preprocessing, progress=False).images
    assert predict_views(model, support[:2])[:, 0].max() < 0.5


def test_fused_bench_cell_reuses_its_base_training_exactly(backbone, demo_data, tmp_path):
    run_bench(
        demo_data, tmp_path / "bench", "tiny", ["ppad", "ppad+knn"], [0], settings=SMALL, device="cpu", progress=False
    )
    runs = tmp_path / "bench" / "runs"
    scratch = tmp_path / "scratch"
    train_run(demo_data, scratch, backbone, settings=replace(SMALL, seed=0), method="ppad+knn", progress=False)

    def tensors(path):
        with safe_open(str(path / PROMPT_FILES["best"]), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}

    base, warm, cold = (
        tensors(runs / "ppad__sas" / "seed0"),
        tensors(runs / "ppad+knn__sas" / "seed0"),
        tensors(scratch),
    )
    for key in base:  # the learned prompts: warm start = from scratch = base run
        torch.testing.assert_close(warm[key], base[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(cold[key], base[key], rtol=0, atol=1e-6)
    assert set(warm) == set(base) | {"memory.bank", "memory.calibration", "fusion_weight"}
    torch.testing.assert_close(warm["fusion_weight"], cold["fusion_weight"])
