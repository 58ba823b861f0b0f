"""Issue 18: MediCLIP — adapters on frozen patch features, a pixel-level map trained by focal + Dice."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ppad.backbones import FeatureCache
from ppad.bench import plan
from ppad.cli.main import cli
from ppad.data.batches import synthesize_batch
from ppad.export.runtime import sidecar_path
from ppad.maps import anomaly_maps, applicable_map_methods
from ppad.maps.registry import resolve_map_method
from ppad.methods import MediCLIPConfig, get_method
from ppad.methods.inference import predict_views
from ppad.methods.presets import MEDICLIP_PPAD, MEDICLIP_REFERENCE, PPAD
from ppad.prompts.text import ClassWordsTextPrompt
from ppad.synthesis import get_synthesis
from ppad.training.losses import dice_loss, focal_dice, focal_loss
from tests.conftest import NIH, needs_zhanglab, zhanglab_manifest
from tests.conftest import run_ppad as ppad


@pytest.fixture(scope="module")
def mediclip(backbone):
    torch.manual_seed(0)
    return get_method("mediclip").build(backbone)


@pytest.fixture(scope="module")
def films() -> np.ndarray:
    return np.random.default_rng(5).random((3, 224, 224), dtype=np.float32)


def test_focal_loss_against_hand_computed_pixels():
    # both pixels have p(abnormal) = 0.75; one is abnormal (p_t = 0.75), one normal (p_t = 0.25)
    logits = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1).expand(1, 2, 1, 2).contiguous()
    target = torch.tensor([[[1.0, 0.0]]])
    expected = (-(0.25**2) * math.log(0.75) - 0.75**2 * math.log(0.25)) / 2  # γ = 2, α = 1
    assert focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert focal_loss(logits, target, gamma=0).item() == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2)


def test_dice_loss_against_hand_computed_images():
    probability = torch.tensor([[[0.5, 1.0], [0.0, 0.0]], [[0.25, 0.25], [0.25, 0.25]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    first = 1 - (2 * 1.5 + 1) / (1.5 + 2 + 1)  # Σp·t = 1.5, Σp = 1.5, Σt = 2, smooth 1
    second = 1 - 1 / (1 + 0 + 1)  # an empty mask: only Σp = 1 counts
    assert dice_loss(probability, target).item() == pytest.approx((first + second) / 2)
    assert dice_loss(target, target).item() == pytest.approx((0 + 0) / 2)  # a perfect map on both


def test_the_map_is_a_probability_of_the_input_size_and_its_maximum_is_the_score(mediclip, films):
    images = mediclip.preprocessing.normalize(torch.from_numpy(films))
    with mediclip.inference():
        amap = mediclip.anomaly_map(images)
        views = mediclip.view_probabilities(images)
    assert amap.shape == (3, 224, 224) and views.shape == (3, 1)
    assert amap.min() >= 0 and amap.max() <= 1 and amap.flatten(1).std(dim=1).min() > 0
    torch.testing.assert_close(views[:, 0], amap.flatten(1).amax(dim=1))
    # through the map registry and the scorer, as `ppad score --maps` and `ppad score` run them
    assert resolve_map_method(mediclip) == "mediclip"
    assert applicable_map_methods(mediclip) == ["mediclip", "gradient"]  # not the pooled embedding's CAM
    drawn = anomaly_maps(mediclip, films, lungs=False)
    scores = mediclip.aggregate(predict_views(mediclip, films))
    np.testing.assert_allclose(drawn.reshape(3, -1).max(axis=1), scores, atol=1e-6)


def test_with_two_classes_as_logits_the_map_is_a_softmax_of_mean_cosines(mediclip, films):
    images = mediclip.preprocessing.normalize(torch.from_numpy(films[:1]))
    with mediclip.inference():
        logits = mediclip.map_logits(images)
        dense = mediclip.dense_features(images)
        text = mediclip.text_features()[0]
        local = [torch.nn.functional.normalize(a(d), dim=1) for a, d in zip(mediclip.adapters, dense)]
        cosines = torch.stack([torch.einsum("bdhw,cd->bchw", x, text) for x in local]).mean(dim=0)
    assert logits.abs().max() <= 1 + 1e-6  # cosines, no temperature
    upsampled = torch.nn.functional.interpolate(cosines, size=(224, 224), mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, upsampled)


@pytest.mark.parametrize("which", ["tiny", "cxr-lite"])
def test_only_the_adapters_and_the_text_context_get_gradients(request, which):
    backbone = request.getfixturevalue("backbone" if which == "tiny" else "cxr_lite")
    model = get_method("mediclip").build(backbone, MediCLIPConfig(normal_words=("normal",), abnormal_words=("lesion",)))
    support = np.random.default_rng(0).random((4, 224, 224), dtype=np.float32)
    batch = synthesize_batch(
        support, model.region_masks(support), get_synthesis("gaussian-intensity"), np.random.default_rng(1), 1.0
    )
    focal_dice(model, batch.to_model(model.preprocessing, model.device)).backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == {name for name, p in model.named_parameters() if p.requires_grad}
    adapters = {f"adapters.{i}.{k}" for i in range(len(model.layers)) for k in ("weight", "bias")}
    assert with_grad == {"text_prompt.ctx", *adapters} and len(model.layers) == (2 if which == "tiny" else 3)
    assert set(model.learned_state_dict()) == with_grad


def test_cxr_lite_adapters_read_its_stride_8_16_32_stages(cxr_lite):
    model = get_method("mediclip").build(cxr_lite)
    maps = cxr_lite.dense_features(torch.zeros(1, 3, 224, 224), model.layers)
    assert [tuple(m.shape[1:]) for m in maps] == [(40, 28, 28), (112, 14, 14), (320, 7, 7)]
    assert [a.in_channels for a in model.adapters] == [40, 112, 320] and model.adapters[0].out_channels == 256


def test_vit_patch_features_are_open_clips_block_outputs(backbone):
    images = torch.randn(2, 3, 224, 224)
    ours = backbone.dense_features(images, (1, 2))
    theirs = backbone.clip.visual.forward_intermediates(images, indices=2, intermediates_only=True)
    for mine, reference in zip(ours, theirs["image_intermediates"]):
        assert mine.shape == (2, 64, 7, 7)
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["tiny", "cxr-lite"])
def test_trimmed_prompts_encode_as_the_full_context_does(request, which):
    backbone = request.getfixturevalue("backbone" if which == "tiny" else "cxr_lite")
    torch.manual_seed(0)
    prompt = ClassWordsTextPrompt(backbone, (("normal", "no findings"), ("lesion",)))
    full = ClassWordsTextPrompt(backbone, (("normal", "no findings"), ("lesion",)))
    full.load_state_dict(prompt.state_dict())
    full.length = None
    assert prompt.length == 1 + 8 + 2 + 1 + 1  # [SOS] ctx×8 "no findings" "." [EOS]
    with torch.no_grad():
        torch.testing.assert_close(prompt.text_features(backbone), full.text_features(backbone), rtol=1e-5, atol=1e-5)


def test_mask_free_text_changes_a_causal_towers_features(backbone):
    torch.manual_seed(0)
    causal = ClassWordsTextPrompt(backbone, (("normal",), ("lesion",)))
    free = ClassWordsTextPrompt(backbone, (("normal",), ("lesion",)), causal=False)
    free.load_state_dict(causal.state_dict())
    assert free.length is None  # without the mask every padding token reaches the end token
    with torch.no_grad():
        assert (causal.text_features(backbone) - free.text_features(backbone)).abs().max() > 1e-3


def test_the_feature_cache_keeps_dense_features_outside_autograd_only(cxr_lite):
    cached, images = FeatureCache(cxr_lite), torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        fresh = cxr_lite.dense_features(images, (2, 3, 4))
        first = cached.dense_features(images, (2, 3, 4))
        again = cached.dense_features(images[1:], (2, 3, 4))
    assert cached.stats()["hits"] == 1 and cached.stats()["misses"] == 2
    for a, b in zip(first, fresh):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again[2], fresh[2][1:], rtol=1e-5, atol=1e-5)
    cached.dense_features(images, (2, 3, 4))  # with gradients on: straight through, nothing stored
    assert cached.stats()["entries"] == 2


def test_mediclip_training_draw_adds_a_second_site_half_the_time():
    image = np.full((224, 224), 0.5, np.float32)
    task = get_synthesis("mediclip-train", sources=np.random.default_rng(0).random((4, 224, 224), dtype=np.float32))
    draws = [task(image, np.ones((224, 224), bool), np.random.default_rng(seed)) for seed in range(400)]
    second = np.mean(["second" in d.params for d in draws])
    normal = np.mean([not d.mask.any() for d in draws])
    assert abs(second - 0.5) < 0.08
    assert abs(normal - 0.25 * (0.5 + 0.5 * 0.25)) < 0.06  # identity, and identity again (or no second site)
    for draw in draws:  # the joined mask covers every pixel either site changed
        assert np.all(draw.mask | (draw.image == image))


def test_reference_preset_pins_the_authors_choices():
    assert MEDICLIP_REFERENCE.choices() == {
        "shots": 16,
        "epochs": 200,
        "causal_text": False,
        "batch_size": 8,
        "lr": 1e-3,
        "optimizer": "adam",
        "loss": "focal-dice",
        "synthesis": "mediclip-train",
        "p_anomaly": 1.0,
    }
    assert {k: v for k, v in MEDICLIP_PPAD.choices().items() if v != MEDICLIP_REFERENCE.choices()[k]} == {
        "shots": 64,
        "epochs": 50,
        "causal_text": True,
    }


def test_train_reference_records_every_choice_and_an_option_overrides_one(demo_data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--method", "mediclip", "--backbone", "tiny", "--data", demo_data, "--out", out]
    args += ["--preset", "reference", "--epochs", "1", "--val-size", "4", "--quiet", "--device", "cpu"]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    model = json.loads((out / "config.json").read_text())["model"]
    manifest = json.loads((out / "manifest.json").read_text())
    recorded = {**model, **manifest["settings"]}
    assert {k: recorded[k] for k in MEDICLIP_REFERENCE.choices()} == {**MEDICLIP_REFERENCE.choices(), "epochs": 1}
    assert set(manifest["result"]["history"][0]) >= {"val_auc", "val_image_auc", "val_pixel_auc"}
    result = CliRunner().invoke(cli, [*map(str, args[:8]), str(tmp_path / "other"), "--patch-rule", "any"])
    assert result.exit_code != 0 and "--patch-rule does not apply to --method mediclip" in result.output


def test_a_bench_trains_mediclip_with_its_own_preset():
    cells = plan(["knn", "mediclip", "mediclip+knn"], None, [0], [PPAD])
    assert [(c.folder, c.preset) for c in cells] == [
        ("knn__sas/seed0", PPAD),
        ("mediclip__mediclip-train/seed0", MEDICLIP_PPAD),
        ("mediclip+knn__mediclip-train/seed0", MEDICLIP_PPAD),
    ]


def test_mediclip_with_the_memory_fuses_its_map_score(backbone, films):
    model = get_method("mediclip+knn").build(backbone)
    model.prepare(films[:2], batch_size=2)
    model.fusion_weight = torch.tensor(0.25)
    views = predict_views(model, films)
    assert model.view_names == ["", "memory"] and views.shape == (3, 2)
    np.testing.assert_allclose(model.aggregate(views), 0.25 * views[:, 0] + 0.75 * views[:, 1], atol=1e-6)
    assert resolve_map_method(model) == "mediclip"


@needs_zhanglab
def test_train_evaluate_map_and_export_real_films_through_the_cli(tmp_path):
    manifest = tmp_path / "films.csv"
    test = zhanglab_manifest(manifest, train_normals=24, test_per_class=8)
    run = tmp_path / "run"
    schedule = ["--shots", "16", "--val-size", "8", "--epochs", "2", "--quiet", "--device", "cpu"]
    done = ppad("train", "--method", "mediclip", "--data", manifest, "--out", run, *schedule)
    assert done.returncode == 0, done.stderr
    result = json.loads((run / "manifest.json").read_text())["result"]
    best = result["history"][result["best_epoch"] - 1]
    assert best["val_auc"] == pytest.approx((best["val_image_auc"] + best["val_pixel_auc"]) / 2)
    assert f"= mean of image {best['val_image_auc']:.3f} and pixel {best['val_pixel_auc']:.3f}" in done.stdout

    done = ppad("evaluate", "--run", run, "--data", manifest, "--quiet", "--bootstrap", "50", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())["metrics"]
    assert metrics["n_normal"] == 8 and metrics["n_abnormal"] == 8 and 0 <= metrics["auc"] <= 1

    films = [str(item.path) for item in test]
    maps = tmp_path / "maps"
    done = ppad("score", "--run", run, *films, "--out", tmp_path / "torch.csv", "--maps", maps, "--quiet")
    assert done.returncode == 0, done.stderr
    reference = list(csv.DictReader(open(tmp_path / "torch.csv")))
    amap = np.load(maps / f"{test[0].path.stem}.npy")
    assert np.isfinite(amap).all() and amap.min() >= 0 and amap.max() <= float(reference[0]["score"]) + 1e-6

    model = tmp_path / "model.onnx"
    done = ppad("export", "--run", run, "--format", "onnx", "--out", model)
    assert done.returncode == 0, done.stderr
    assert json.loads(sidecar_path(model).read_text())["parity"]["real_films"]
    done = ppad("score", "--onnx", model, *films, "--out", tmp_path / "onnx.csv", "--quiet")
    assert done.returncode == 0, done.stderr
    for row, expected in zip(csv.DictReader(open(tmp_path / "onnx.csv")), reference, strict=True):
        assert row["prediction"] == expected["prediction"]
        assert abs(float(row["score"]) - float(expected["score"])) <= 1e-4

    if not (NIH / "boxes.csv").is_file():
        pytest.skip(f"no radiologist boxes at {NIH}")
    done = ppad("evaluate", "--run", run, "--boxes", NIH / "boxes.csv", "--quiet", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    scores = json.loads((run / "evaluation" / "localization.json").read_text())["scores"]
    assert set(scores) == {"mediclip", "centre prior", "lung prior", "uniform random"}
    assert 0 <= scores["mediclip"]["pointing_game"] <= 1 and 0 < scores["mediclip"]["pixel_auc"] < 1
