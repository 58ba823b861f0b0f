"""The shipped lung-field segmenter, its post-processing and ``ppad lungs``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from ppad.lungs.postprocess import LEFT_LABEL, RIGHT_LABEL, image_halves, lung_fields
from tests.conftest import SHARED_DATA, ZHANGLAB, needs_zhanglab, run_ppad

LUNG_MASKS = SHARED_DATA / "lung-masks"
VAL_DICE_FLOOR = 0.93


def two_lungs(shape: tuple[int, int] = (200, 200)) -> np.ndarray:
    """A synthetic probability map: two lung-like boxes (the image-left one with a hole) and a speck."""
    probability = np.zeros(shape, np.float32)
    probability[30:170, 20:90] = 0.95  # image left = patient's right
    probability[40:160, 115:180] = 0.9  # image right = patient's left
    probability[80:100, 40:60] = 0.1  # a hole inside the right lung
    probability[5:10, 190:195] = 0.9  # a speck: third component
    return probability


@pytest.fixture(scope="module")
def segmenter():
    from ppad.lungs import load_lung_segmenter

    return load_lung_segmenter()


@pytest.fixture(scope="module")
def zhanglab_film() -> np.ndarray:
    from ppad.data import read_image

    return read_image(sorted((ZHANGLAB / "test" / "normal").iterdir())[0])


def test_postprocessing_keeps_two_largest_components_and_fills_holes():
    fields = lung_fields(two_lungs())
    expected_right = np.zeros((200, 200), bool)
    expected_right[30:170, 20:90] = True
    expected_left = np.zeros((200, 200), bool)
    expected_left[40:160, 115:180] = True
    assert fields.trusted, fields.reason
    np.testing.assert_array_equal(fields.right, expected_right)  # hole filled, image left = patient's right
    np.testing.assert_array_equal(fields.left, expected_left)
    assert not fields.mask[5:10, 190:195].any()  # the speck is dropped
    assert fields.side_fractions() == pytest.approx((140 * 70 / 200**2, 120 * 65 / 200**2))
    labels = fields.side_labels()
    assert set(np.unique(labels)) == {0, RIGHT_LABEL, LEFT_LABEL} and labels[100, 30] == RIGHT_LABEL


def test_mirrored_map_swaps_right_and_left():
    fields, mirrored = lung_fields(two_lungs()), lung_fields(two_lungs()[:, ::-1])
    np.testing.assert_array_equal(mirrored.right, fields.left[:, ::-1])
    np.testing.assert_array_equal(mirrored.left, fields.right[:, ::-1])


def untrustworthy_maps() -> dict[str, tuple[np.ndarray, str]]:
    """Probability maps a segmenter could return on a film it cannot read, and the reason expected."""
    one = two_lungs()
    one[:, 100:] = 0
    filled = np.zeros((200, 200), np.float32)
    filled[2:198, 2:98] = filled[2:198, 102:198] = 0.9
    asymmetric = two_lungs()
    asymmetric[70:, 100:] = 0  # the left lung cut to a fifth of the right one
    one_side = np.zeros((200, 200), np.float32)
    one_side[20:90, 10:90] = one_side[110:180, 10:90] = 0.9
    unsure = np.where(two_lungs() > 0.5, 0.6, 0.0).astype(np.float32)
    return {
        "blank": (np.zeros((200, 200), np.float32), "no lung field found"),
        "one-lung": (one, "one lung field found"),
        "area": (filled, "implausible lung area: 94% of the film"),
        "asymmetric": (asymmetric, "lung fields grossly asymmetric"),
        "one-side": (one_side, "both lung fields on one side of the film"),
        "unsure": (unsure, "segmenter unsure"),
    }


@pytest.mark.parametrize("case", list(untrustworthy_maps()))
def test_untrustworthy_maps_fall_back_to_halves(case):
    probability, reason = untrustworthy_maps()[case]
    fields = lung_fields(probability)
    assert reason in fields.reason and not fields.trusted
    assert fields.regions == "halves"
    right, left = image_halves((200, 200))
    np.testing.assert_array_equal(fields.right, right)  # patient's right = the image's left half
    np.testing.assert_array_equal(fields.left, left)
    assert right[:, 0].all() and not right[:, -1].any()


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.skipif(not (LUNG_MASKS / "labels.csv").is_file(), reason=f"lung masks not found at {LUNG_MASKS}")
def test_shipped_weights_reach_the_val_dice_floor_and_their_record(segmenter):
    from ppad.io import read_json
    from ppad.lungs.training import read_split, val_dice

    scores = val_dice(segmenter, read_split(LUNG_MASKS, "val"))
    assert len(scores) == 52
    assert scores.mean() >= VAL_DICE_FLOOR, f"val Dice {scores.mean():.4f}"
    record = read_json(segmenter.source.with_suffix(".json"))
    assert record["val_dice"]["mean"] == pytest.approx(scores.mean(), abs=2e-3)
    assert record["input_size"] == segmenter.spec.input_size


@needs_zhanglab
def test_a_mirrored_film_swaps_the_right_and_left_lungs(segmenter, zhanglab_film):
    fields, mirrored = segmenter.segment([zhanglab_film, np.ascontiguousarray(zhanglab_film[:, ::-1])])
    assert fields.trusted and mirrored.trusted, (fields.reason, mirrored.reason)
    assert fields.right[:, :112].sum() > fields.right[:, 112:].sum()  # patient's right = image left
    assert overlap(mirrored.right, fields.left[:, ::-1]) > 0.9
    assert overlap(mirrored.left, fields.right[:, ::-1]) > 0.9


@needs_zhanglab
def test_blank_non_chest_and_lateral_like_images_are_flagged_and_fall_back(segmenter, zhanglab_film):
    from skimage import data

    blank = np.zeros((256, 256), np.float32)
    camera = data.camera().astype(np.float32) / 255  # a photograph, not a chest
    one_lung = np.ascontiguousarray(np.repeat(zhanglab_film[:, :112], 2, axis=1))  # one lung field across the film
    for name, image in {"blank": blank, "camera": camera, "one lung": one_lung}.items():
        fields = segmenter.segment([image])[0]
        assert not fields.trusted, f"{name} image trusted"
        assert fields.regions == "halves" and fields.reason
        np.testing.assert_array_equal(fields.right, image_halves(image.shape)[0])


@needs_zhanglab
def test_ppad_lungs_writes_masks_of_the_films_sizes_and_a_row_per_input(tmp_path):
    films = sorted((ZHANGLAB / "test" / "pneumonia").iterdir())[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "lungs"
    result = run_ppad("lungs", *films, broken, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "lung fields of 3 films" in result.stdout and f"skipped: {broken}: cannot be decoded" in result.stderr
    with open(out / "lungs.csv", newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert "cannot be decoded" in rows[str(broken)]["error"]
    for film in films:
        size = Image.open(film).size
        mask = np.asarray(Image.open(out / f"{film.stem}.png"))
        assert mask.shape == size[::-1] and set(np.unique(mask)) <= {0, 255}
        sides = np.asarray(Image.open(out / f"{film.stem}_sides.png"))
        row = rows[str(film)]
        assert (int(row["width"]), int(row["height"])) == size and row["error"] == ""
        if row["regions"] == "lungs":
            assert row["reason"] == "" and 0.03 < float(row["right_fraction"]) < 0.4
            assert np.array_equal(mask == 255, sides > 0) and sides[mask == 0].max() == 0
            assert set(np.unique(sides)) == {0, RIGHT_LABEL, LEFT_LABEL}
        else:  # the image halves, patient's right = image left
            assert row["regions"] == "halves" and row["reason"]
            assert sides[:, 0].min() == RIGHT_LABEL and sides[:, -1].max() == LEFT_LABEL
        assert float(row["seconds"]) > 0 and (out / f"{film.stem}_overlay.png").is_file()


def test_ppad_lungs_exits_2_when_nothing_could_be_read(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = run_ppad("lungs", broken, "--out", tmp_path / "lungs", "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: none of the 1 inputs could be read")
    assert "cannot be decoded" in (tmp_path / "lungs" / "lungs.csv").read_text()


def test_training_augmentation_warps_films_and_masks_alike():
    import torch

    from ppad.lungs.training import augment

    masks = torch.zeros(64, 1, 48, 48)
    masks[:, :, 10:40, 6:20] = 1.0  # off-centre, so a mirror image moves it
    images, warped = augment(masks.clone(), masks, torch.Generator().manual_seed(0))
    assert images.shape == warped.shape == masks.shape and 0 <= images.min() and images.max() <= 1
    agreement = ((images > 0.5) == (warped > 0.5)).float().mean()
    assert agreement > 0.97  # same warp; only edge pixels differ (gamma moves the 0.5 crossing)
    mirrored = warped[:, 0, :, 24:].sum(dim=(1, 2)) > warped[:, 0, :, :24].sum(dim=(1, 2))
    assert 10 < mirrored.sum() < 54  # about half the films are mirror images
