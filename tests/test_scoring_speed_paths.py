"""The fast scoring path (all views in one batch, one tower pass for the plain views and the memory,
the folded image tower) scores as the one-view-at-a-time training path does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppad.backbones.dual_tower import DualTowerBackbone
from ppad.methods import get_method
from ppad.methods.inference import predict_views


def _prompted_model(backbone, method: str):
    """``method`` with prompts far from their initialisation and a memory filled from random films."""
    torch.manual_seed(0)
    model = get_method(method).build(backbone)
    with torch.no_grad():
        for prompt in model.learned_state_dict().values():
            prompt.add_(torch.randn_like(prompt) * 0.5)
    films = np.random.default_rng(0).random((7, 224, 224), dtype=np.float32)
    if method.endswith("knn"):
        model.prepare(films[:4])
        model.memory.calibration = torch.tensor([0.05, 0.02])  # probabilities away from 0 and 1
    return model.eval(), films[4:]


def _per_view(model, films: np.ndarray) -> np.ndarray:
    """Each view on its own through the training path (``forward``), the memory through ``memory_features``."""
    x = model.preprocessing.normalize(torch.from_numpy(films))
    with torch.no_grad():
        columns = [torch.sigmoid(model(x, torch.full((len(x),), v))) for v in range(len(model.regions))]
        if "memory" in model.view_names:
            columns.append(model.memory.probability(model.backbone.memory_features(x)))
    return torch.stack(columns, dim=1).numpy()


@pytest.mark.parametrize("method", ["ppad", "ppad+knn"])
@pytest.mark.parametrize("backbone_name", ["tiny", "cxr-lite"])
def test_batched_views_score_as_one_view_at_a_time(request, method, backbone_name):
    backbone = request.getfixturevalue("backbone" if backbone_name == "tiny" else "cxr_lite")
    model, films = _prompted_model(backbone, method)
    batched = predict_views(model, films, batch_size=2)
    per_view = _per_view(model, films)
    assert batched.shape == (3, len(model.view_names)) and batched.std() > 1e-3  # not a constant
    np.testing.assert_allclose(batched, per_view, rtol=0, atol=1e-5)


@pytest.mark.parametrize("backbone_name", ["tiny", "cxr-lite"])
def test_one_pass_gives_the_image_features_and_the_memory(request, backbone_name):
    backbone = request.getfixturevalue("backbone" if backbone_name == "tiny" else "cxr_lite")
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        features, memory = backbone.encode_image_and_memory(x)
        torch.testing.assert_close(features, backbone.encode_image(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(memory, backbone.memory_features(x), rtol=0, atol=1e-6)


def test_the_folded_tower_computes_the_shipped_tower_and_leaves_its_weights(cxr_lite: DualTowerBackbone):
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        final, stages = cxr_lite.image_tower.forward_intermediates(x, indices=[2, 3, 4])
        shipped = [m.mean(dim=(2, 3)) for m in (*stages, final)]
        folded_final, folded_stages = cxr_lite.folded_image_tower.forward_intermediates(x, indices=[2, 3, 4])
        folded = [m.mean(dim=(2, 3)) for m in (*folded_stages, folded_final)]
    for ours, theirs in zip(folded, shipped):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    folded_modules = list(cxr_lite.folded_image_tower.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded_modules)  # every norm was folded
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in cxr_lite.image_tower.modules())
    assert not any(key.startswith("folded_image_tower.") for key in cxr_lite.state_dict())  # nor the fingerprint


def test_the_memory_alone_stops_the_tower_after_its_stages(cxr_lite: DualTowerBackbone):
    calls = []
    head = cxr_lite.folded_image_tower.conv_head
    handle = head.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            cxr_lite.memory_features(torch.randn(1, 3, 224, 224))
            assert not calls
            cxr_lite.encode_image_and_memory(torch.randn(1, 3, 224, 224))
            assert len(calls) == 1
    finally:
        handle.remove()


def test_the_image_prompt_still_learns_through_the_folded_tower(cxr_lite):
    model, films = _prompted_model(cxr_lite, "ppad")
    x = model.preprocessing.normalize(torch.from_numpy(films))
    model.train()
    model(x, torch.zeros(len(x), dtype=torch.long)).sum().backward()
    assert model.image_prompt.values.grad.abs().sum() > 0
    assert all(p.grad is None for p in cxr_lite.parameters())
