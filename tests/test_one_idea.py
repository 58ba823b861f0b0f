"""One piece of code per idea: validation and calibration run the tower once per film, maps run
the folded inference tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppad.data.batches import SyntheticBatch
from ppad.data.synthetic import chest_like
from ppad.maps import anomaly_maps
from ppad.methods import get_method


@pytest.fixture(scope="module")
def films() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([chest_like(rng, 224)[0] for _ in range(6)])


def test_mediclip_validation_reads_each_films_tower_features_once(backbone, films):
    torch.manual_seed(0)
    model = get_method("mediclip").build(backbone).eval()
    masks = np.zeros(films.shape, bool)
    masks[3:, 80:120, 80:120] = True
    labels = np.array([0, 0, 0, 1, 1, 1], np.float32)
    validation = SyntheticBatch(films, np.zeros(6, np.int64), labels, masks)
    first = model.validation_metrics(validation, batch_size=4)
    assert model.validation_features.stats() == {**model.validation_features.stats(), "hits": 0, "misses": 6}
    second = model.validation_metrics(validation, batch_size=4)
    assert model.validation_features.stats()["hits"] == 6 and model.validation_features.stats()["misses"] == 6
    assert second == pytest.approx(first, abs=1e-9) and set(first) == {"val_auc", "val_image_auc", "val_pixel_auc"}
    assert not any(key.startswith("_validation") for key in model.prompt_state_dict())


def test_fused_calibration_runs_the_tower_once_per_validation_film(backbone, films, monkeypatch):
    model = get_method("zeroshot+knn").build(backbone)
    model.prepare(films[:2], batch_size=2)
    calls = []
    run = backbone.encode_image_and_memory
    monkeypatch.setattr(backbone, "encode_image_and_memory", lambda x, pool=None: calls.append(len(x)) or run(x, pool))
    monkeypatch.setattr(backbone, "memory_features", lambda *_: pytest.fail("memory features computed twice"))
    chosen = model.calibrate(films[2:], np.array([0, 0, 1, 1]), batch_size=3)
    assert sum(calls) == 4 and chosen["calibrated_on"].startswith("memory: 2 held-out validation normals")
    assert 0 <= chosen["fusion_weight"] <= 1 and "fusion_val_auc" in chosen


@pytest.mark.parametrize("map_method", ["text", "memory", "gradient"])
def test_dual_tower_maps_run_the_folded_tower_only(cxr_lite, films, map_method):
    model = get_method("zeroshot+knn").build(cxr_lite)
    model.prepare(films[:3], batch_size=3)
    unfolded = []
    hooks = [m.register_forward_hook(lambda *_: unfolded.append(1)) for m in cxr_lite.image_tower.modules()]
    try:
        maps = anomaly_maps(model.eval(), films[3:], map_method, lungs=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert maps.shape == (3, 224, 224) and np.isfinite(maps).all() and not unfolded
