from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ppad.backbones import (
    CheckpointError,
    ClipBackbone,
    get_architecture,
    load_backbone,
    read_state_dict,
    save_openai_state_dict,
    weights_fingerprint,
)


@pytest.fixture(scope="module")
def tiny_clip():
    return get_architecture("tiny").build_random(seed=7).eval()


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 224, 224, generator=generator)
    return images


def _outputs(clip, images, tokens):
    with torch.no_grad():
        return clip.encode_image(images), clip.encode_text(tokens)


def test_openai_state_dict_round_trip_is_exact(tiny_clip, inputs, tmp_path):
    path = save_openai_state_dict(tiny_clip, tmp_path / "tiny.pt")
    loaded = load_backbone(path)
    assert loaded.architecture.name == "tiny"
    tokens = loaded.tokenize(["left lung normal.", "pneumonia."])
    expected_image, expected_text = _outputs(tiny_clip, inputs, tokens)
    with torch.no_grad():
        # same weights; only float summation order may differ between module instances
        torch.testing.assert_close(loaded.encode_image(inputs), expected_image, rtol=0, atol=1e-5)
        torch.testing.assert_close(loaded.encode_text(tokens), expected_text, rtol=0, atol=1e-5)
    assert loaded.fingerprint == weights_fingerprint(tiny_clip)


def test_tiny_spec_goes_through_a_saved_file(isolated_cache):
    backbone = load_backbone("tiny")
    files = list(Path(isolated_cache).glob("tiny-seed*.pt"))
    assert len(files) == 1
    assert backbone.fingerprint == load_backbone(files[0]).fingerprint


def test_missing_key_is_a_named_error(tiny_clip, tmp_path):
    state = tiny_clip.state_dict()
    del state["visual.ln_post.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"broken\.pt.*missing keys: visual\.ln_post\.weight"):
        load_backbone(tmp_path / "broken.pt", architecture="tiny")


def test_unexpected_key_and_shape_mismatch_are_named(tiny_clip, tmp_path):
    state = tiny_clip.state_dict()
    state["extra.weight"] = torch.zeros(3)
    state["visual.proj"] = torch.zeros(5, 5)
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError) as error:
        load_backbone(tmp_path / "odd.pt")
    message = str(error.value)
    assert "unexpected keys: extra.weight" in message and "visual.proj (5, 5)" in message


def test_wrapped_prefixed_fp16_checkpoint_loads_as_fp32(tiny_clip, inputs, tmp_path):
    state = {f"module.{k}": v.half() for k, v in tiny_clip.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "open_clip_style.pt")
    loaded = load_backbone(tmp_path / "open_clip_style.pt")
    assert loaded.clip.visual.proj.dtype == torch.float32
    assert torch.equal(loaded.clip.visual.proj, tiny_clip.visual.proj.half().float())


def test_safetensors_has_the_same_fingerprint(tiny_clip, tmp_path):
    save_file({k: v.contiguous() for k, v in tiny_clip.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    assert load_backbone(tmp_path / "tiny.safetensors").fingerprint == weights_fingerprint(tiny_clip)


def test_torchscript_archive_is_read(tiny_clip, tmp_path):
    traced = torch.jit.trace(
        tiny_clip, (torch.zeros(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)), strict=False, check_trace=False
    )
    traced.save(str(tmp_path / "jit.pt"))
    assert load_backbone(tmp_path / "jit.pt").fingerprint == weights_fingerprint(tiny_clip)


class NotATensor:
    pass


def test_arbitrary_pickles_are_refused(tmp_path):
    torch.save({"state_dict": {"x": NotATensor()}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        read_state_dict(tmp_path / "evil.pt")


def test_missing_file_and_garbage_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: no such file"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: is not a backbone weights file"):
        read_state_dict(tmp_path / "junk.pt")


def test_positional_embedding_is_interpolated_for_other_sizes(backbone: ClipBackbone):
    with torch.no_grad():
        features = backbone.encode_image(torch.randn(2, 3, 160, 160))
    assert features.shape == (2, backbone.architecture.embed_dim)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        backbone.grid_size(100)


def test_backbone_is_frozen_and_stays_in_eval(backbone: ClipBackbone):
    backbone.train()
    assert not backbone.training and not backbone.clip.training
    assert not any(p.requires_grad for p in backbone.parameters())


def test_vit_b32_state_dict_is_recognised(tmp_path):
    """Any OpenAI-format ViT-B/32 state dict (CheXzero's layout) loads without naming the architecture."""
    clip = get_architecture("ViT-B/32").build_random(seed=0)
    torch.save({k: v.half() for k, v in clip.state_dict().items()}, tmp_path / "vit.pt")
    loaded = load_backbone(tmp_path / "vit.pt")
    assert loaded.architecture.name == "ViT-B/32"
    assert loaded.patch_size == 32 and loaded.width == 768
