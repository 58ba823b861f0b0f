from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ppad.methods import PPADConfig, PPADModel
from ppad.prompts import PositionTextPrompt, prompt_token_ids

WORDS = "a photo of chest"  # four single-token words


def test_context_set_to_real_words_reproduces_plain_text_features(backbone):
    positions, classes = ["left lung", "lower lung", ""], ["normal", "pneumonia"]
    prompt = PositionTextPrompt(backbone, positions, classes, n_ctx=4)
    word_ids = torch.tensor(backbone.tokenizer.encode(WORDS))
    assert len(word_ids) == 4
    with torch.no_grad():
        prompt.ctx[0] = backbone.token_embeddings(word_ids)
        learned = prompt.text_features(backbone).reshape(len(positions) * len(classes), -1)
        texts = [f"{p} {WORDS} {c}.".strip() for p in positions for c in classes]
        plain = F.normalize(backbone.encode_text(backbone.tokenize(texts)), dim=-1)
    torch.testing.assert_close(learned, plain, rtol=0, atol=1e-5)


def test_class_specific_context_gives_each_class_its_own_vectors(backbone):
    prompt = PositionTextPrompt(backbone, ["left lung", ""], ["normal", "pneumonia"], n_ctx=3, class_specific=True)
    assert prompt.ctx.shape == (2, 3, backbone.text_width)
    with torch.no_grad():
        before = prompt.text_features(backbone).clone()
        prompt.ctx[1] += torch.randn_like(prompt.ctx[1])  # changes only the "pneumonia" prompts
        after = prompt.text_features(backbone)
    torch.testing.assert_close(after[:, 0], before[:, 0])
    assert (after[:, 1] - before[:, 1]).abs().max() > 1e-3


def test_prompt_ids_place_context_between_position_and_class(backbone):
    ids, starts, eot = prompt_token_ids(backbone, ["upper lung", ""], ["normal"], n_ctx=16)
    tok = backbone.tokenizer
    assert ids[0, 0] == tok.sot_token_id and starts.tolist() == [3, 1]
    assert ids[0, 3 + 16] == tok.encode("normal")[0]
    assert ids[0, eot[0]] == tok.eot_token_id and ids[1, eot[1]] == tok.eot_token_id
    with pytest.raises(ValueError, match="needs .* tokens"):
        prompt_token_ids(backbone, ["lung " * 60], ["normal"], n_ctx=16)


@pytest.fixture
def model(backbone):
    torch.manual_seed(0)
    return PPADModel(backbone, PPADConfig(n_ctx=4))


def _features(model, images, region):
    patches = model.backbone.input_embeddings(images)
    index = torch.full((len(images),), region)
    return model.backbone.encode_input_embeddings(model.image_prompt(patches, model.region_keep[index]))


def test_whole_image_view_leaves_image_features_unchanged(model):
    images = torch.randn(2, 3, 224, 224)
    whole = model.regions.names.index("")
    assert model.region_keep[whole].min() == 1
    with torch.no_grad():
        torch.testing.assert_close(
            _features(model, images, whole), model.backbone.encode_image(images), rtol=0, atol=1e-6
        )


def test_half_mask_sees_only_its_region(model):
    region = model.regions.names.index("left lung")  # patient's left = image's right half
    images = torch.randn(1, 3, 224, 224)
    changed_outside, changed_inside = images.clone(), images.clone()
    changed_outside[..., :, :96] += 3.0  # image's left columns: replaced by the prompt
    changed_inside[..., :, 128:] += 3.0
    with torch.no_grad():
        base = _features(model, images, region)
        torch.testing.assert_close(_features(model, changed_outside, region), base, rtol=0, atol=1e-6)
        assert (_features(model, changed_inside, region) - base).abs().max() > 1e-3


def test_gradients_reach_prompts_only(model):
    images = torch.randn(4, 3, 224, 224)
    region = torch.tensor([0, 0, 2, 4])  # left lung, upper lung, whole: upper-right patches never replaced
    model(images, region).sum().backward()
    assert model.text_prompt.ctx.grad is not None and model.text_prompt.ctx.grad.abs().sum() > 0
    patch_grad = model.image_prompt.values.grad
    replaced = (model.region_keep[region] == 0).any(dim=0)[:, 0]
    assert patch_grad[replaced].abs().sum(dim=1).min() > 0  # every replaced patch learns
    assert patch_grad[~replaced].abs().max() == 0  # patches never replaced get nothing
    assert all(p.grad is None for p in model.backbone.parameters())
    assert set(model.prompt_state_dict()) == {"text_prompt.ctx", "image_prompt.values"}
