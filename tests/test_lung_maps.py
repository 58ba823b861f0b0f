"""Anomaly maps restricted to the lung fields, and the lung prior of ``ppad evaluate --boxes``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from ppad.data.synthetic import chest_like
from ppad.lungs import LungFields
from ppad.maps import anomaly_maps
from ppad.maps import lungs as map_lungs
from ppad.maps.files import write_maps
from ppad.maps.lungs import restrict_to_lungs
from ppad.methods import get_method
from ppad.metrics.localization import (
    Box,
    box_mask,
    centre_prior,
    localization_scores,
    lung_prior,
    pixel_auc,
    pointing_hit,
)
from tests.conftest import NIH, needs_nih
from tests.conftest import run_ppad as ppad

SIZE = 224


def two_lungs(shape: tuple[int, int], reason: str = "") -> LungFields:
    """Hand-made lung fields: rows 40–119, columns 20–59 (patient's right) and 60–99 (left) of a
    224 frame, scaled to ``shape``; ``reason`` makes them untrusted."""
    rows, cols = shape[0] / SIZE, shape[1] / SIZE
    right, left = np.zeros(shape, bool), np.zeros(shape, bool)
    top, bottom = round(40 * rows), round(120 * rows)
    right[top:bottom, round(20 * cols) : round(60 * cols)] = True
    left[top:bottom, round(60 * cols) : round(100 * cols)] = True
    return LungFields(right, left, reason)


class FixedSegmenter:
    """Stands in for the shipped segmenter: the same hand-made fields on every image, trusted
    except on images whose mean is below ``dark`` (as the real one distrusts blank films)."""

    def __init__(self, dark: float = 0.05) -> None:
        self.dark, self.calls = dark, 0

    def __call__(self, images: np.ndarray) -> list[LungFields]:
        self.calls += 1
        return [two_lungs(image.shape, "" if image.mean() >= self.dark else "too dark") for image in images]


@pytest.fixture
def fixed_segmenter(monkeypatch) -> FixedSegmenter:
    segmenter = FixedSegmenter()
    monkeypatch.setattr(map_lungs, "shipped_frame_lung_fields", lambda: segmenter)
    return segmenter


@pytest.fixture(scope="module")
def knn(backbone):
    rng = np.random.default_rng(0)
    model = get_method("knn").build(backbone)
    model.prepare(np.stack([chest_like(rng, SIZE)[0] for _ in range(2)]))
    return model.eval()


@pytest.fixture(scope="module")
def films() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.stack([chest_like(rng, SIZE)[0] for _ in range(2)]).astype(np.float32)


def test_outside_trusted_lungs_a_map_holds_its_in_lung_minimum(knn, films):
    raw = anomaly_maps(knn, films, "gradient", lungs=False)
    fields = [two_lungs((SIZE, SIZE)), two_lungs((SIZE, SIZE), "one lung field found")]
    restricted = anomaly_maps(knn, films, "gradient", fields=fields)
    inside = fields[0].mask
    assert raw[0][~inside].min() < raw[0][inside].min()  # the raw map runs lower outside: a real change
    np.testing.assert_array_equal(restricted[0][inside], raw[0][inside])
    assert (restricted[0][~inside] == raw[0][inside].min()).all()
    np.testing.assert_array_equal(restricted[1], raw[1])  # untrusted: the whole map, unchanged
    with pytest.raises(ValueError, match="one lung mask per map"):
        restrict_to_lungs(raw, fields[:1])


def test_maps_are_restricted_by_default_and_each_batch_is_segmented_once(knn, films, fixed_segmenter):
    dark = np.full((1, SIZE, SIZE), 0.01, np.float32)
    images = np.concatenate([films, dark])
    restricted = anomaly_maps(knn, images, "gradient", batch_size=1)
    raw = anomaly_maps(knn, images, "gradient", batch_size=1, lungs=False)
    assert fixed_segmenter.calls == 1
    inside = two_lungs((SIZE, SIZE)).mask
    for amap, plain in zip(restricted[:2], raw[:2]):
        assert (amap[~inside] == plain[inside].min()).all()
    np.testing.assert_array_equal(restricted[2], raw[2])


def test_written_maps_name_the_films_whose_lungs_are_not_trusted(knn, fixed_segmenter, tmp_path):
    paths = [tmp_path / "chest.png", tmp_path / "dark.png"]
    Image.fromarray(np.uint8(255 * chest_like(np.random.default_rng(2), 112)[0])).save(paths[0])
    Image.fromarray(np.full((112, 112), 2, np.uint8)).save(paths[1])
    report = write_maps(knn, paths, tmp_path / "maps", "gradient", progress=False)
    assert report.untrusted_lungs == [(paths[1], "too dark")]
    amap = np.load(tmp_path / "maps" / "chest.npy")
    lungs = two_lungs((112, 112)).mask  # the 224 frame's fields at the film's 112 px (exactly half)
    assert (amap[~lungs] == amap.min()).all() and amap[lungs].max() > amap.min()
    whole = write_maps(knn, paths, tmp_path / "whole", "gradient", progress=False, lungs=False)
    assert whole.untrusted_lungs == [] and np.load(tmp_path / "whole" / "chest.npy").std() > 0


def test_lung_prior_pointing_game_and_auc_by_hand():
    lungs = two_lungs((SIZE // 2, SIZE // 2)).mask  # rows 20–59, columns 10–49: 1600 pixels
    assert lungs.sum() == 1600
    boxes = box_mask([Box("Mass", 10, 20, 20, 10)], lungs.shape)  # 200 pixels, all in the lungs
    prior = lung_prior(lungs, lungs.shape)
    # every lung pixel ties for the maximum: the share of them inside the box
    assert pointing_hit(prior, boxes) == pytest.approx(200 / 1600)
    # inside: 200 ones; outside: 1400 ones and 12544 − 1600 = 10944 zeros → (10944 + ½ · 1400) / 12344
    assert pixel_auc(prior, boxes) == pytest.approx((10944 + 700) / 12344)
    half_out = box_mask([Box("Mass", 0, 20, 20, 10)], lungs.shape)  # columns 0–19: half in the lungs
    # pointing: 100 of 1600; AUC: in (100 ones, 100 zeros) vs out (1500 ones, 10844 zeros)
    expected_auc = (100 * 10844 + 0.5 * (100 * 1500 + 100 * 10844)) / (200 * 12344)
    scores = localization_scores([prior, prior], [boxes, half_out])
    assert scores["pointing_game"] == pytest.approx((200 / 1600 + 100 / 1600) / 2)
    assert scores["pixel_auc"] == pytest.approx(((10944 + 700) / 12344 + expected_auc) / 2)
    np.testing.assert_array_equal(lung_prior(None, (30, 40)), centre_prior((30, 40)))  # untrusted


def test_a_single_maximum_still_scores_one_or_zero():
    mask = np.zeros((5, 5), bool)
    mask[1:3, 1:3] = True
    amap = np.zeros((5, 5))
    amap[2, 2] = 1.0
    assert pointing_hit(amap, mask) == 1.0 and pointing_hit(np.roll(amap, 2, axis=1), mask) == 0.0
    assert pointing_hit(np.zeros((5, 5)), mask) == pytest.approx(4 / 25)  # a flat map: the box's share


def test_evaluate_localization_reports_the_lung_prior(knn, fixed_segmenter, tmp_path):
    from ppad.scoring.localization import evaluate_localization, format_localization

    Image.fromarray(np.uint8(255 * chest_like(np.random.default_rng(3), 112)[0])).save(tmp_path / "a.png")
    Image.fromarray(np.full((112, 112), 2, np.uint8)).save(tmp_path / "dark.png")
    (tmp_path / "boxes.csv").write_text("image,finding,x,y,w,h\na.png,Mass,10,20,20,10\ndark.png,Mass,0,0,56,112\n")
    result = evaluate_localization(knn, tmp_path / "boxes.csv", map_methods=("gradient",), progress=False)
    assert list(result["scores"]) == ["gradient", "centre prior", "lung prior", "uniform random"]
    assert fixed_segmenter.calls == 1 and result["map_lungs"] is True
    assert result["untrusted_lungs"] == [f"{(tmp_path / 'dark.png').resolve()}: too dark"]
    dark_centre = localization_scores([centre_prior((112, 112))], [box_mask([Box("", 0, 0, 56, 112)], (112, 112))])
    lung = result["scores"]["lung prior"]  # a.png: the hand-computed values above; dark.png: the centre prior
    assert lung["pointing_game"] == pytest.approx((200 / 1600 + dark_centre["pointing_game"]) / 2)
    assert lung["pixel_auc"] == pytest.approx(((10944 + 700) / 12344 + dark_centre["pixel_auc"]) / 2)
    assert "lung prior" in format_localization(result) and "lung fields not trusted: " in format_localization(result)
    whole = evaluate_localization(knn, tmp_path / "boxes.csv", map_methods=("gradient",), progress=False, lungs=False)
    assert whole["map_lungs"] is False and whole["scores"]["lung prior"] == lung
    assert whole["scores"]["gradient"] != result["scores"]["gradient"]


@needs_nih
def test_evaluate_boxes_on_real_films_prints_and_writes_the_lung_prior(tmp_path):
    rows = list(csv.DictReader(open(NIH / "labels.csv")))
    manifest = tmp_path / "normals.csv"
    normals = [r["image"] for r in rows if r["split"] == "train" and r["findings"] == "No Finding"][:12]
    manifest.write_text("path,label,split\n" + "".join(f"{NIH / name},normal,train\n" for name in normals))
    with open(NIH / "boxes.csv") as handle:
        boxes = list(csv.DictReader(handle))[:6]
    (tmp_path / "boxes.csv").write_text(
        "image,finding,x,y,w,h\n"
        + "".join(f"{NIH / b['image']},{b['finding']},{b['x']},{b['y']},{b['w']},{b['h']}\n" for b in boxes)
    )
    run = tmp_path / "run"
    schedule = ["--backbone", "tiny", "--shots", "8", "--val-size", "4", "--quiet", "--device", "cpu"]
    assert ppad("train", "--method", "knn", "--data", manifest, "--out", run, *schedule).returncode == 0
    done = ppad("evaluate", "--run", run, "--boxes", tmp_path / "boxes.csv", "--quiet", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "maps restricted to the lung fields" in done.stdout
    line = next(line for line in done.stdout.splitlines() if line.startswith("lung prior"))
    localization = json.loads((run / "evaluation" / "localization.json").read_text())
    lung = localization["scores"]["lung prior"]
    assert line.split()[2:] == [f"{lung['pointing_game']:.3f}", f"{lung['pixel_auc']:.3f}"]
    assert localization["map_lungs"] is True and 0 < lung["pointing_game"] < 1 and lung["pixel_auc"] > 0.5


def test_the_service_draws_lung_restricted_maps(knn, films, fixed_segmenter):
    from ppad.serve.overlay import anomaly_map, overlay_png

    amap, lungs = anomaly_map(knn, films[:1])
    raw = anomaly_maps(knn, films[:1], lungs=False)[0]
    assert lungs.trusted and (amap[~lungs.mask] == raw[lungs.mask].min()).all()
    np.testing.assert_array_equal(amap[lungs.mask], raw[lungs.mask])
    views = np.full(len(knn.view_names), 0.5)
    assert overlay_png(knn, films[0], amap, lungs, views, 0.5, "film.png").startswith("iVBOR")
