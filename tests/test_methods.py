from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ppad.methods import METHODS, MaPLeModel, ZeroShotConfig, get_method
from ppad.methods.inference import predict_views


@pytest.fixture
def images():
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_methods_are_found_by_name_with_their_defaults(backbone):
    prompt_methods = ["ppad", "ppad-text", "coop", "maple", "zeroshot", "mediclip"]
    assert list(METHODS) == [*prompt_methods, "knn", "patch-knn", *(f"{name}+knn" for name in prompt_methods)]
    with pytest.raises(KeyError, match="known: ppad"):
        get_method("nope")
    assert get_method("maple").config(n_ctx=None).n_ctx == 2  # None keeps the method's default
    assert get_method("zeroshot").config(n_ctx=8) == get_method("zeroshot").defaults  # not a zero-shot setting
    views = {name: len(method.build(backbone).regions) for name, method in METHODS.items()}
    assert {name: views[name] for name in prompt_methods} == {
        "ppad": 5,
        "ppad-text": 5,
        "coop": 1,
        "maple": 1,
        "zeroshot": 1,
        "mediclip": 1,
    }
    assert views["knn"] == 1 and views["ppad+knn"] == 5
    patch = METHODS["patch-knn"].build(backbone)  # on the lung fields' five regions, one view
    assert views["patch-knn"] == 5 and patch.view_names == ["patch memory"] and patch.layers == (1, 2)
    assert METHODS["ppad+knn"].build(backbone).view_names == [
        "left lung",
        "right lung",
        "upper lung",
        "lower lung",
        "",
        "memory",
    ]
    learnable = {name: sorted(method.build(backbone).prompt_state_dict()) for name, method in METHODS.items()}
    assert learnable["ppad"] == ["image_prompt.values", "text_prompt.ctx"]
    assert learnable["ppad-text"] == learnable["coop"] == ["text_prompt.ctx"]
    assert learnable["zeroshot"] == []
    assert learnable["knn"] == learnable["patch-knn"] == ["memory.bank", "memory.calibration"]
    assert learnable["ppad+knn"] == sorted([*learnable["ppad"], "fusion_weight", "memory.bank", "memory.calibration"])
    assert "deep_text" in learnable["maple"] and "couplings.0.weight" in learnable["maple"]


@pytest.mark.parametrize(
    "template, prompts", [("words", ["normal", "pneumonia"]), ("chexzero", ["no pneumonia", "pneumonia"])]
)
def test_zero_shot_is_a_softmax_over_two_prompts(backbone, images, template, prompts):
    model = get_method("zeroshot").build(backbone, ZeroShotConfig(template=template))
    grayscale = (images * 0.3 + 0.4).clamp(0, 1)[:, 0]
    probabilities = predict_views(model, grayscale.numpy())
    assert probabilities.shape == (3, 1)
    with torch.no_grad():
        image = F.normalize(backbone.encode_image(model.preprocessing.normalize(grayscale)), dim=-1)
        text = F.normalize(backbone.encode_text(backbone.tokenize(prompts)), dim=-1)
        expected = (backbone.logit_scale * image @ text.T).softmax(-1)[:, 1]
    torch.testing.assert_close(torch.from_numpy(probabilities[:, 0]), expected, rtol=0, atol=1e-5)


def test_ppad_text_views_differ_only_through_text(backbone, images):
    model = get_method("ppad-text").build(backbone)
    patches = backbone.input_embeddings(images)
    with torch.no_grad():
        left = model.image_features(patches, torch.zeros(3, dtype=torch.long))
        whole = model.image_features(patches, torch.full((3,), 4))
    torch.testing.assert_close(left, whole)
    torch.testing.assert_close(whole, backbone.encode_image(images))


def test_ppad_whole_view_skips_the_image_prompt_path(backbone, images):
    model = get_method("ppad").build(backbone)
    region = torch.tensor([4, 4, 0])
    model(images, region).sum().backward()
    grad = model.image_prompt.values.grad
    assert grad is not None and grad.abs().sum() > 0  # from the left-lung row only
    model.zero_grad()
    model(images[:2], region[:2]).sum().backward()
    assert model.image_prompt.values.grad is None or model.image_prompt.values.grad.abs().sum() == 0


def test_maple_prompts_are_deep_and_coupled(backbone, images):
    torch.manual_seed(0)
    model = get_method("maple").build(backbone)
    assert isinstance(model, MaPLeModel) and model.depth == 2  # tiny has 2 layers per tower
    patches = backbone.input_embeddings(images)
    region = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        before_image = model.image_features(patches, region).clone()
        before_text = model.compute_text_features().clone()
        model.deep_text.add_(torch.randn_like(model.deep_text))
        after_image = model.image_features(patches, region)
        after_text = model.compute_text_features()
    # the layer-1 text prompt reaches the image tower through its coupling function
    assert (after_image - before_image).abs().max() > 1e-4
    assert (after_text - before_text).abs().max() > 1e-4
    assert (before_image - backbone.encode_image(images)).abs().max() > 1e-4  # vision prompts are in the sequence
    model(images, region).sum().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in backbone.parameters())


@pytest.mark.parametrize("name", ["ppad", "ppad-text", "coop", "maple", "zeroshot"])
def test_view_probabilities_equal_the_training_path_view_by_view(backbone, images, name):
    torch.manual_seed(0)
    model = get_method(name).build(backbone)
    with torch.no_grad():
        for prompt in model.learned_state_dict().values():  # never the shared frozen backbone
            prompt.add_(torch.randn_like(prompt) * 0.5)  # prompts far from their initialisation
        views = model.view_probabilities(images)
        per_view = [torch.sigmoid(model(images, torch.full((3,), v))) for v in range(len(model.regions))]
    assert views.shape == (3, len(model.regions))
    torch.testing.assert_close(views, torch.stack(per_view, dim=1), rtol=0, atol=1e-5)
    if name == "ppad":  # the image prompt makes the views' image features differ
        with torch.no_grad():
            left, whole = model.view_features(images)[:, [0, 4]].unbind(dim=1)
        assert (left - whole).abs().max() > 1e-3
