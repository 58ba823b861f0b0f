"""Localization metrics against boxes: hand-made maps with known answers, floors, bad box files."""

from __future__ import annotations

import numpy as np
import pytest

from ppad.errors import DataError
from ppad.metrics.localization import (
    Box,
    box_mask,
    centre_prior,
    localization_scores,
    pixel_auc,
    pointing_hit,
    read_boxes,
)


def test_box_mask_takes_pixels_whose_centre_is_inside():
    mask = box_mask([Box("x", 1.0, 2.0, 3.0, 1.5)], (6, 6))
    assert mask.sum() == 3  # columns 1–3 (centres 1.5–3.5 ∈ [1, 4)); row 2 only (centre 3.5 ∉ [2, 3.5))
    assert mask[2, 1:4].all()
    with pytest.raises(DataError, match="covers no pixel"):
        box_mask([Box("x", 10.0, 10.0, 2.0, 2.0)], (6, 6))


def test_pointing_game_and_auc_on_known_maps():
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    inside = np.where(mask, 1.0, 0.0)
    assert pointing_hit(inside, mask) and pixel_auc(inside, mask) == 1.0
    assert not pointing_hit(1 - inside, mask) and pixel_auc(1 - inside, mask) == 0.0
    half = np.zeros((4, 4))
    half[0, 0] = half[3, 3] = 1.0  # one of four inside pixels and one of twelve outside pixels tie at the top
    # P(inside > outside) + ½ P(tie): (1·11 + 3·0 + ½·1 + ½·3·11) / 48
    assert pixel_auc(half, mask) == pytest.approx((11 + 0.5 + 16.5) / 48)
    scores = localization_scores([inside, 1 - inside], [mask, mask])
    assert scores == {"pointing_game": 0.5, "pixel_auc": 0.5, "n_images": 2}
    with pytest.raises(ValueError, match="shape"):
        localization_scores([inside], [np.zeros((3, 3), dtype=bool)])


def test_centre_prior_beats_random_on_centred_boxes():
    rng = np.random.default_rng(0)
    masks = [box_mask([Box("x", 40 + d, 40 - d, 20, 20)], (100, 100)) for d in range(5)]
    prior = localization_scores([centre_prior((100, 100))] * 5, masks)
    random = localization_scores([rng.random((100, 100)) for _ in masks], masks)
    assert prior["pointing_game"] == 1.0 and prior["pixel_auc"] > 0.95
    assert random["pointing_game"] == 0.0 and abs(random["pixel_auc"] - 0.5) < 0.05


def test_boxes_file_is_read_relative_to_its_folder(tmp_path):
    (tmp_path / "boxes.csv").write_text(
        "image,finding,x,y,w,h\na.png,Mass,1,2,3,4\nsub/b.png,Nodule,0,0,1,1\na.png,Mass,5,5,1,1\n"
    )
    boxes = read_boxes(tmp_path / "boxes.csv")
    assert list(boxes) == [(tmp_path / "a.png").resolve(), (tmp_path / "sub" / "b.png").resolve()]
    assert boxes[(tmp_path / "a.png").resolve()][0] == Box("Mass", 1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("image,x,y,w,h\na.png,1,2,3,4\n", "missing \\['finding'\\]"),
        (
            "image,finding,x,y,w,h\na.png,Mass,1,2,3,4\nb.png,Mass,1,two,3,4\n",
            r"boxes.csv:3: x, y, w, h must be numbers",
        ),
        ("image,finding,x,y,w,h\na.png,Mass,1,2,0,4\n", r"boxes.csv:2: a box needs"),
        ("image,finding,x,y,w,h\n,Mass,1,2,3,4\n", r"boxes.csv:2: empty image path"),
        ("image,finding,x,y,w,h\n", "no boxes"),
    ],
)
def test_bad_boxes_files_name_the_row(tmp_path, text, match):
    (tmp_path / "boxes.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        read_boxes(tmp_path / "boxes.csv")


def test_evaluate_localization_compares_maps_with_the_floors(backbone, tmp_path):
    from PIL import Image

    from ppad.methods import get_method
    from ppad.scoring.localization import evaluate_localization, format_localization

    rng = np.random.default_rng(0)
    Image.fromarray(np.uint8(255 * rng.random((120, 160)))).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"no image")
    (tmp_path / "boxes.csv").write_text("image,finding,x,y,w,h\na.png,Mass,60,40,40,30\nbroken.png,Mass,1,1,5,5\n")
    model = get_method("knn").build(backbone)
    model.prepare(rng.random((2, 224, 224)).astype(np.float32))
    result = evaluate_localization(model, tmp_path / "boxes.csv", map_methods=("auto", "gradient"), progress=False)
    assert list(result["scores"]) == ["gradient", "centre prior", "lung prior", "uniform random"]
    assert (result["n_images"], result["n_boxes"]) == (1, 1)
    assert result["scores"]["centre prior"]["pointing_game"] == 1.0
    assert len(result["unreadable"]) == 1 and "broken.png" in result["unreadable"][0]
    table = format_localization(result)
    assert "uniform random" in table and "unreadable:" in table
