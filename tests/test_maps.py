"""Anomaly maps: every method on both backbone families, exactness, a planted blob, files, overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ppad.backbones import Preprocessing
from ppad.data.synthetic import chest_like
from ppad.errors import SettingsError, UnknownNameError
from ppad.maps import anomaly_maps, applicable_map_methods, render_overlay, resolve_map_method, to_original
from ppad.maps.dense import memory_map, text_map
from ppad.maps.files import write_maps
from ppad.maps.overlay import display_range, wrap_lines
from ppad.methods import get_method
from tests.conftest import NIH, needs_nih


@pytest.fixture(scope="module")
def films() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([chest_like(rng, 224)[0] for _ in range(8)])


def _model(name, backbone, support):
    model = get_method(name).build(backbone)
    model.prepare(support)
    return model.eval()


@pytest.mark.parametrize(
    "method, auto",
    [
        ("ppad", "sweep"),
        ("maple", "gradient"),
        ("knn", "gradient"),
        ("zeroshot+knn", "gradient"),
        ("patch-knn", "patches"),
    ],
)
def test_every_method_on_a_vit_gives_maps(backbone, films, method, auto):
    model = _model(method, backbone, films[:4])
    names = applicable_map_methods(model)
    assert "gradient" in names and ("sweep" in names) == (method == "ppad")
    for name in names:
        maps = anomaly_maps(model, films[4:6], name)
        assert maps.shape == (2, 224, 224) and maps.dtype == np.float32 and np.isfinite(maps).all(), name
    assert resolve_map_method(model, "auto") == auto


def test_dual_tower_maps_average_to_the_scores_they_explain(cxr_lite, films):
    model = _model("zeroshot+knn", cxr_lite, films[:4])
    x = model.preprocessing.normalize(torch.from_numpy(films[4:6]))
    with model.inference():
        log_odds = model(x, torch.zeros(2, dtype=torch.long))
        distances = model.memory.distances(cxr_lite.memory_features(x))
        torch.testing.assert_close(text_map(model, x).mean(dim=(1, 2)), log_odds, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(memory_map(model, x).mean(dim=(1, 2)), distances, atol=1e-5, rtol=1e-4)
    assert resolve_map_method(model, "auto") == "memory"


@pytest.mark.parametrize("map_method", ["memory", "text"])
def test_a_planted_blob_is_where_the_map_changes_most(cxr_lite, films, map_method):
    """Measured, not assumed: the maximum of a raw map often sits on the film's border; what
    moves with a planted blob is the difference it makes to the map."""
    model = _model("zeroshot+knn", cxr_lite, films[:4])
    yy, xx = np.mgrid[:224, :224]
    plain = anomaly_maps(model, films[4:6], map_method, lungs=False)  # the raw map's response to the blob
    for cy, cx in [(70, 60), (150, 160), (160, 60)]:
        blob = 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 12**2))
        blobbed = np.clip(films[4:6] + blob, 0, 1).astype(np.float32)
        change = anomaly_maps(model, blobbed, map_method, lungs=False) - plain
        for amap in change:
            peak = np.unravel_index(amap.argmax(), amap.shape)
            assert np.hypot(peak[0] - cy, peak[1] - cx) < 40, (map_method, (cy, cx), peak)


def test_unknown_or_inapplicable_map_methods_are_clear_errors(backbone, films):
    model = _model("knn", backbone, films[:2])
    with pytest.raises(UnknownNameError, match="unknown map method 'heat'"):
        anomaly_maps(model, films[:1], "heat")
    with pytest.raises(SettingsError, match="'memory' does not apply"):
        anomaly_maps(model, films[:1], "memory")


@pytest.mark.parametrize("mode", ["pad", "crop"])
def test_maps_go_back_to_the_films_pixels(mode):
    film = np.zeros((120, 200), dtype=np.float32)
    film[50:70, 150:170] = 1.0  # a bright square right of centre (inside the crop too)
    preprocessing = Preprocessing(image_size=64, resize_mode=mode, mean=0.5, std=0.5)
    back = to_original(preprocessing.resize(film), film.shape, preprocessing)
    assert back.shape == film.shape
    row, col = np.unravel_index(back.argmax(), back.shape)
    assert 50 <= row < 70 and 150 <= col < 170
    if mode == "crop":
        assert back[:, :10].max() == pytest.approx(back.min(), abs=1e-6)  # cropped-away margin: no evidence


def test_overlay_holds_film_legend_and_text():
    film = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (200, 1))
    amap = np.zeros_like(film)
    amap[80:120, 100:140] = 3.0
    image = render_overlay(film, amap, ["left lung", "", "memory"], np.array([0.2, 0.9, 0.5]), 0.9, "film.png")
    assert image.mode == "RGB" and image.height == 341 and image.width > 512  # a small film is shown at 512 px
    pixels = np.asarray(image)
    assert (pixels[171, 205] != pixels[171, 205].mean()).any()  # coloured where the map is high
    assert (pixels[10, 20] == pixels[10, 20, 0]).all()  # gray where it is low
    big = render_overlay(
        np.zeros((2048, 1024), np.float32), np.zeros((2048, 1024), np.float32), [""], np.array([0.1]), 0.1
    )
    assert big.height == 1024
    with pytest.raises(ValueError, match="same shape"):
        render_overlay(film, amap[:10], [""], np.array([0.1]), 0.1)


def test_overlay_legend_says_where_the_display_clips_the_map():
    amap = np.linspace(-0.679, 0.769, 10_000).reshape(100, 100)
    (low, high), (low_label, high_label) = display_range(amap)
    assert amap.min() < low < high < amap.max()
    assert low_label == f"<= {low:.3g}" and high_label == f">= {high:.3g}"
    assert display_range(np.zeros((4, 4)))[1] == ("0", "0")  # nothing clipped: plain values


def test_overlay_title_keeps_the_whole_file_name():
    from PIL import Image, ImageDraw, ImageFont

    draw, font = ImageDraw.Draw(Image.new("RGB", (10, 10))), ImageFont.load_default(size=14)
    name = "person1_virus_6_a_very_long_file_name_from_an_archive.jpeg"
    lines = wrap_lines(draw, font, name, 120)
    assert "".join(lines) == name and len(lines) > 1
    assert all(draw.textlength(line, font=font) <= 120 for line in lines)
    assert wrap_lines(draw, font, "bright = least like the normals", 400) == ["bright = least like the normals"]


def test_write_maps_keeps_going_past_bad_files_and_names_collisions(backbone, films, tmp_path):
    model = _model("knn", backbone, films[:2])
    paths = []
    for folder, shape in (("a", (150, 100)), ("b", (90, 90))):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "film.png")
        Image.fromarray(np.uint8(255 * np.random.default_rng(1).random(shape))).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    report = write_maps(model, [paths[0], tmp_path / "broken.png", paths[1]], tmp_path / "out", progress=False)
    assert [str(f.path) for f in report.failures] == [str(tmp_path / "broken.png")]
    assert [(src, npy.name, png.name) for src, npy, png in report.written] == [
        (paths[0], "film.npy", "film_overlay.png"),
        (paths[1], "film-2.npy", "film-2_overlay.png"),
    ]
    assert np.load(report.written[0][1]).shape == (150, 100)
    assert Image.open(report.written[1][2]).mode == "RGB"


@needs_nih
def test_maps_of_real_films_on_cxr_lite(cxr_lite, tmp_path):
    import csv

    rows = list(csv.DictReader(open(NIH / "labels.csv")))
    normals = [NIH / r["image"] for r in rows if r["split"] == "train" and r["findings"] == "No Finding"][:4]
    tests = [NIH / r["image"] for r in rows if r["split"] == "test"][:3]
    model = get_method("knn").build(cxr_lite)
    model.prepare(np.stack([model.preprocessing.resize(np.asarray(Image.open(p), np.float32) / 255) for p in normals]))
    report = write_maps(model, tests, tmp_path, progress=False)
    assert not report.failures and len(report.written) == 3
    for source, npy, _ in report.written:
        amap = np.load(npy)
        assert amap.shape == Image.open(source).size[::-1] and np.isfinite(amap).all() and amap.std() > 0
