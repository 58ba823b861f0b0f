"""Issue 10: the ``reference`` preset's six choices, each pinned to its definition."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import ndimage

from ppad.bench import plan
from ppad.bench.harness import ABLATIONS
from ppad.cli.main import cli
from ppad.data.batches import ModelBatch
from ppad.methods import PPADConfig, get_method
from ppad.methods.presets import CHOICES, PPAD, PRESETS, REFERENCE, preset_ablation
from ppad.regions import get_region_set
from ppad.synthesis import boundary_distance, get_synthesis
from ppad.synthesis.shapes import ReferenceScribble, box_points
from ppad.training import TrainSettings
from ppad.training.loop import _train_epoch
from ppad.training.losses import softmax_bce, two_sigmoid_bce
from tests.test_regions import patch_masks

LOWER = 3  # index of "lower lung" in the ppad region set
CENTRE = 24  # patch (3, 3) of the 7 × 7 grid


def test_reference_preset_is_the_issue_table_and_ppad_is_todays_defaults():
    assert REFERENCE.choices() == {
        "region_sides": "image",
        "patch_rule": "any",
        "prompt_init_std": 0.2,
        "loss": "two-sigmoid",
        "full_batch": True,
        "synthesis": "sas-reference",
    }
    settings, config = TrainSettings(), PPADConfig()
    assert PPAD.settings(settings) == settings
    assert PPAD.config(get_method("ppad")) == config
    assert {k: getattr(settings, k, getattr(config, k, None)) for k in CHOICES} == PPAD.choices()


def test_ablation_flips_one_choice_per_row_and_names_it():
    rows = preset_ablation()
    assert rows[0] == PPAD and rows[-1] == REFERENCE and len(rows) == len(CHOICES) + 2
    for row, choice in zip(rows[1:-1], CHOICES):
        changed = [k for k in CHOICES if getattr(row, k) != getattr(PPAD, k)]
        assert changed == [choice] and row.name == f"ppad+{choice}={getattr(REFERENCE, choice)}"
    assert PPAD.overriding(loss="softmax-bce", full_batch=None) == PPAD  # unchanged choices keep the name


def test_image_sides_put_the_left_lung_on_image_columns_0_to_111():
    image_sides = get_region_set("ppad", sides="image")
    masks = dict(zip(image_sides.names, image_sides.pixel_masks(224)))
    assert masks["left lung"][:, :112].all() and not masks["left lung"][:, 112:].any()
    assert masks["right lung"][:, 112:].all() and not masks["right lung"][:, :112].any()
    anatomical = get_region_set("ppad").pixel_masks(224)
    np.testing.assert_array_equal(np.stack([masks["upper lung"], masks["lower lung"], masks[""]]), anatomical[2:])


def test_any_overlap_keeps_28_lower_lung_patches_and_never_masks_the_centre(backbone):
    # ViT-B/32 at 224: a 7 × 7 grid; the lower lung starts at pixel row 120, inside patch row 3
    anyone = patch_masks(backbone, get_region_set("ppad", sides="image", patch_rule="any"))
    majority = patch_masks(backbone, get_region_set("ppad"))
    assert anyone[LOWER].sum() == 28 and majority[LOWER].sum() == 21
    assert anyone[:, CENTRE].min() == 1 and majority[:, CENTRE].min() == 0


def test_dual_tower_masks_pixels_exactly_whatever_the_patch_rule(cxr_lite):
    for rule in ("majority", "any"):
        regions = get_region_set("ppad", patch_rule=rule)
        keep = cxr_lite.keep_of_masks(torch.from_numpy(regions.pixel_masks(224)), regions.patch_rule)
        assert keep[LOWER, 0, :, 0].sum() == 104  # rows 120-223


class _Logits(torch.nn.Module):
    """Stands in for a detector: returns fixed class logits (a leaf tensor whose gradient we read)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def class_logits(self, images, regions, masks=None):
        return self.logits

    def forward(self, images, regions, masks=None):
        return self.logits[:, 1] - self.logits[:, 0]


def _batch(labels: torch.Tensor) -> ModelBatch:
    return ModelBatch(torch.zeros(len(labels), 3, 1, 1), torch.zeros(len(labels), dtype=torch.long), labels, None)


def test_two_sigmoid_gradient_is_sigmoid_minus_target_over_2b():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0], [-4.0, 0.1]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    two_sigmoid_bce(_Logits(logits), _batch(labels)).backward()
    targets = torch.stack([1 - labels, labels], dim=1)
    torch.testing.assert_close(logits.grad, (torch.sigmoid(logits.detach()) - targets) / (2 * len(labels)))


def test_softmax_bce_gradient_is_softmax_minus_target_over_b():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0.0, 1.0], dtype=torch.float64)
    softmax_bce(_Logits(logits), _batch(labels)).backward()
    p = torch.softmax(logits.detach(), dim=1)[:, 1]
    torch.testing.assert_close(logits.grad[:, 1], (p - labels) / len(labels))
    torch.testing.assert_close(logits.grad[:, 0], -(p - labels) / len(labels))


def test_prompt_init_std_sets_the_image_prompt_scale(backbone):
    for std in (0.02, 0.2):
        torch.manual_seed(0)
        model = get_method("ppad").build(backbone, PPADConfig(prompt_init_std=std))
        assert model.image_prompt.values.std().item() == pytest.approx(std, rel=0.1)


@pytest.mark.parametrize(("full_batch", "steps"), [(True, 1), (False, 3)])
def test_full_batch_takes_one_step_per_epoch(backbone, full_batch, steps):
    model = get_method("ppad-text").build(backbone, PPADConfig(image_prompt=False, image_size=64))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    taken = []
    optimizer.step = lambda: taken.append(1)  # count steps only
    support = np.random.default_rng(0).random((9, 64, 64)).astype(np.float32)
    settings = TrainSettings(shots=9, batch_size=4, full_batch=full_batch)
    masks = model.regions.pixel_masks(64)
    _train_epoch(model, optimizer, support, get_synthesis("identity"), masks, np.random.default_rng(1), settings)
    assert len(taken) == steps


def test_reference_sas_points_are_uniform_in_the_20_to_80_percent_box():
    points = box_points((224, 200), np.random.default_rng(0), ReferenceScribble().box, 20000)
    sides = np.array([224, 200])
    assert (points >= 0.2 * sides).all() and (points < 0.8 * sides).all()
    assert (points.min(axis=0) < 0.201 * sides).all() and (points.max(axis=0) > 0.799 * sides).all()
    histogram, _ = np.histogram(points[:, 0], bins=6, range=(0.2 * 224, 0.8 * 224))
    assert histogram.min() > 0.9 * histogram.mean()


def test_reference_sas_ignores_the_region_is_5x5_dilated_and_does_not_fade_at_the_edge():
    task, image = get_synthesis("sas-reference"), np.full((224, 224), 0.5, np.float32)
    lower = np.zeros((224, 224), bool)
    lower[120:] = True
    one = task(image, lower, np.random.default_rng(3))
    other = task(image, ~lower, np.random.default_rng(3))
    np.testing.assert_array_equal(one.mask, other.mask)  # placed in the central box, not the region
    assert np.array_equal(ndimage.binary_opening(one.mask, np.ones((5, 5), bool)), one.mask)
    cut = np.zeros((224, 224), bool)
    cut[:, :40] = True  # a mask cut by the image's left border
    assert boundary_distance(cut, fade_at_edge=False)[100, 0] == 39
    assert boundary_distance(cut)[100, 0] == 0


def test_reference_sas_is_larger_than_ppads():
    image, region = np.full((224, 224), 0.5, np.float32), np.ones((224, 224), bool)
    areas = {
        name: np.median([get_synthesis(name)(image, region, np.random.default_rng(s)).mask.sum() for s in range(40)])
        for name in ("sas", "sas-reference")
    }
    assert areas["sas-reference"] > 3 * areas["sas"]


def test_preset_ablation_cells_have_their_own_folders_and_syntheses():
    cells = plan(["ppad"], ABLATIONS["preset"].syntheses, [0], ABLATIONS["preset"].presets)
    assert len({cell.folder for cell in cells}) == len(cells) == 8
    assert cells[0].folder == "ppad__sas/seed0"  # ppad's cells keep their old folders
    assert [cell.synthesis for cell in cells].count("sas-reference") == 2


def test_train_preset_reference_records_every_choice(demo_data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--backbone", "tiny", "--data", str(demo_data), "--out", str(out), "--preset", "reference"]
    args += ["--shots", "4", "--epochs", "1", "--val-size", "2", "--no-full-batch", "--quiet", "--device", "cpu"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    model = json.loads((out / "config.json").read_text())["model"]  # used again at scoring time
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    recorded = {**model, **settings}
    expected = PRESETS["reference"].overriding(full_batch=False).choices()  # one option overrides the preset
    assert {k: recorded[k] for k in CHOICES} == expected


def test_every_choice_has_a_field_in_config_or_settings():
    names = {f.name for f in fields(PPADConfig)} | {f.name for f in fields(TrainSettings)}
    assert set(CHOICES) <= names
