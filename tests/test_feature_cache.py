from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ppad.backbones import FeatureCache, load_backbone
from ppad.methods import get_method
from ppad.methods.inference import predict_views


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_cached_rows_equal_the_tower_and_are_computed_once(backbone, images):
    cached = FeatureCache(backbone)
    embeddings = backbone.input_embeddings(images)
    with torch.no_grad():
        expected = backbone.encode_input_embeddings(embeddings)
        first = cached.encode_input_embeddings(embeddings[:4])
        assert cached.stats()["misses"] == 4 and cached.stats()["hits"] == 0
        mixed = cached.encode_input_embeddings(embeddings[[5, 0, 3, 4]])  # two seen, two new
    assert cached.stats()["hits"] == 2 and cached.stats()["misses"] == 6
    torch.testing.assert_close(first, expected[:4], rtol=0, atol=1e-5)
    torch.testing.assert_close(mixed, expected[[5, 0, 3, 4]], rtol=0, atol=1e-5)
    assert torch.equal(mixed[1], first[0])  # a hit returns exactly what was computed


def test_memory_features_are_cached_apart_from_embeddings(backbone, images):
    cached = FeatureCache(backbone)
    with torch.no_grad():
        memory = cached.memory_features(images)
        again = cached.memory_features(images)
    torch.testing.assert_close(memory, backbone.memory_features(images), rtol=0, atol=1e-5)
    assert torch.equal(memory, again)
    assert cached.stats()["entries"] == len(images)


def test_an_input_carrying_a_gradient_always_runs_the_tower(backbone, images):
    cached = FeatureCache(backbone)
    prompted = backbone.input_embeddings(images).clone().requires_grad_(True)
    features = cached.encode_input_embeddings(prompted)
    features.sum().backward()
    assert prompted.grad is not None and prompted.grad.abs().sum() > 0
    assert cached.stats() == {"hits": 0, "misses": 0, "entries": 0, "bytes": 0}


def test_the_least_recently_used_rows_go_beyond_the_byte_limit(backbone, images):
    embeddings = backbone.input_embeddings(images)
    with torch.no_grad():
        row_bytes = backbone.encode_input_embeddings(embeddings[:1]).nelement() * 4
        cached = FeatureCache(backbone, max_bytes=3 * row_bytes)
        cached.encode_input_embeddings(embeddings[:3])
        cached.encode_input_embeddings(embeddings[:1])  # row 0 is now the most recent
        cached.encode_input_embeddings(embeddings[3:4])  # evicts row 1
        cached.encode_input_embeddings(embeddings[[0, 2, 3]])
    assert cached.stats()["entries"] == 3 and cached.stats()["bytes"] == 3 * row_bytes
    assert cached.stats()["hits"] == 4  # row 0 once, then rows 0, 2, 3
    with torch.no_grad():
        cached.encode_input_embeddings(embeddings[1:2])
    assert cached.stats()["misses"] == 5


def test_a_backbone_that_still_learns_is_refused():
    learning = load_backbone("tiny").requires_grad_(True)
    with pytest.raises(ValueError, match="frozen"):
        FeatureCache(learning)


def test_a_prompt_method_scores_the_same_through_the_cache(backbone):
    torch.manual_seed(0)
    model = get_method("ppad").build(backbone, get_method("ppad").defaults)
    films = np.random.default_rng(0).random((5, 224, 224), dtype=np.float32)
    plain = predict_views(model, films, batch_size=2)
    model.backbone = FeatureCache(backbone)
    first, second = predict_views(model, films, batch_size=3), predict_views(model, films, batch_size=5)
    np.testing.assert_allclose(first, plain, atol=1e-6)
    np.testing.assert_array_equal(second, first)
    assert model.backbone.stats()["hits"] == 5 * 5  # five views (four prompted) of five films


def test_the_bench_reuses_features_across_cells_and_scores_as_a_lone_run(bench_run, demo_data, tmp_path):
    """Every bench cell goes through one cache; a cell equals the same run trained on its own."""
    from ppad.scoring.evaluation import evaluate_run
    from ppad.training import train_run

    out, results, settings = bench_run
    assert results["feature_cache"]["hits"] > results["feature_cache"]["misses"] > 0
    lone = tmp_path / "lone"
    train_run(demo_data, lone, "tiny", settings=settings, method="ppad", device="cpu", progress=False)
    evaluate_run(lone, demo_data, device="cpu", progress=False)
    read = lambda run: json.loads((run / "evaluation" / "metrics.json").read_text())["test_split"]  # noqa: E731
    in_bench, alone = read(out / "runs" / "ppad__sas" / "seed0"), read(lone)
    assert [f["path"] for f in in_bench] == [f["path"] for f in alone]
    np.testing.assert_allclose([f["score"] for f in in_bench], [f["score"] for f in alone], atol=1e-5)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, demo_data):
    from ppad.bench import run_bench
    from ppad.training import TrainSettings

    settings = TrainSettings(shots=8, epochs=2, batch_size=4, validation_size=4)
    out = tmp_path_factory.mktemp("cached-bench")
    results = run_bench(demo_data, out, "tiny", ["ppad", "ppad+knn"], [0], settings=settings, progress=False)
    return out, results, settings
