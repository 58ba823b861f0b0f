from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from ppad.backbones import Preprocessing
from ppad.data import ImageReadError, LayoutError, discover, draw_few_shot, list_images, load_images, read_image


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", slope=1.0, intercept=0.0, window=None, bits=16
) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    allocated = 8 if bits <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, bits, bits - 1, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint8 if allocated == 8 else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


RAMP = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (20, 1))  # 20 x 100, values 0..990


def test_8_bit_png_is_divided_by_255(tmp_path):
    pixels = np.array([[0, 51], [204, 255]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), pixels / 255.0, rtol=1e-6)


def test_16_bit_png_uses_the_full_16_bit_range(tmp_path):
    pixels = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "b.png")
    image = read_image(tmp_path / "b.png")
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, pixels / 65535.0, rtol=1e-6)


def test_rgb_image_becomes_luminance(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red → ITU-R 601 luma 0.299
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=100)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert read_image(tmp_path / "c.png").shape == (4, 4)
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), 76 / 255, atol=1e-6)
    assert abs(read_image(tmp_path / "c.jpg").mean() - 0.299) < 0.02


def test_truncated_png_is_a_named_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: cannot be decoded"):
        read_image(tmp_path / "cut.png")


def test_non_image_file_is_a_named_error(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels")
    with pytest.raises(ImageReadError, match=r"notes\.png"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_monochrome1_dicom_is_inverted(tmp_path):
    mono2 = read_image(write_dicom(tmp_path / "m2.dcm", RAMP, "MONOCHROME2"))
    mono1 = read_image(write_dicom(tmp_path / "m1.dcm", RAMP, "MONOCHROME1"))
    np.testing.assert_allclose(mono2, RAMP / 65535.0, rtol=1e-6)  # the stored depth, not min–max
    np.testing.assert_allclose(mono1, 1 - mono2, atol=1e-6)


def test_dicom_rescale_and_window_are_applied(tmp_path):
    # modality LUT: HU = 2 * raw - 1000 → -1000..980; window centre 0, width 400 → [-200, 200]
    image = read_image(write_dicom(tmp_path / "w.dcm", RAMP, slope=2.0, intercept=-1000.0, window=(0, 400)))
    hu = 2.0 * RAMP[0] - 1000
    assert (image[0, hu <= -200] == 0).all() and (image[0, hu >= 200] == 1).all()
    inside = (hu > -150) & (hu < 150)
    assert np.all(np.diff(image[0, inside]) > 0)  # a linear ramp inside the window


@pytest.mark.parametrize("bits", [8, 16])
def test_a_film_reads_the_same_as_dicom_and_as_png(tmp_path, bits):
    dtype = np.uint8 if bits == 8 else np.uint16
    film = np.random.default_rng(bits).integers(40, 200 * (1 if bits == 8 else 250), (32, 48)).astype(dtype)
    Image.fromarray(film).save(tmp_path / "f.png")
    np.testing.assert_array_equal(
        read_image(write_dicom(tmp_path / "f.dcm", film, bits=bits)), read_image(tmp_path / "f.png")
    )


def test_12_bit_dicom_is_scaled_by_its_bit_depth_not_its_own_range(tmp_path):
    narrow = np.full((8, 8), 1000, dtype=np.uint16)
    narrow[0, 0] = 3000
    image = read_image(write_dicom(tmp_path / "n.dcm", narrow, bits=12))
    np.testing.assert_allclose(image[1, 1], 1000 / 4095, rtol=1e-6)
    np.testing.assert_allclose(image[0, 0], 3000 / 4095, rtol=1e-6)


def test_images_above_the_pixel_limit_are_refused_without_a_raw_warning(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 50), dtype=np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big\.png: has 50×40 = 2,000 pixels, more than 1,000"):
        read_image(tmp_path / "big.png", max_pixels=1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # Pillow would warn at 2,000 and refuse at 3,000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "big.png").shape == (40, 50)
    Image.fromarray(np.zeros((60, 60), dtype=np.uint8)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageReadError, match=r"bomb\.png: has 60×60 = 3,600 pixels, more than 3,000$"):
        read_image(tmp_path / "bomb.png")


def test_suffixless_dicom_is_detected_by_magic(tmp_path):
    path = write_dicom(tmp_path / "IMG0001", RAMP)
    assert read_image(path).shape == RAMP.shape
    (tmp_path / "README").write_text("not an image")
    assert list_images(tmp_path) == [path]  # found inside a folder too, the text file left out


def test_preprocessing_pad_versus_crop():
    wide = np.ones((100, 200), dtype=np.float32)
    padded = Preprocessing(image_size=64, resize_mode="pad").resize(wide)
    cropped = Preprocessing(image_size=64, resize_mode="crop").resize(wide)
    assert padded.shape == cropped.shape == (64, 64)
    assert padded[:8].max() < 0.05 and padded[32, :].min() > 0.95  # black bands top and bottom
    assert cropped.min() > 0.99


def _png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32), value, dtype=np.uint8)).save(path)
    return path


def test_squid_layout_is_discovered(tmp_path):
    for i in range(3):
        _png(tmp_path / "train" / "normal_256" / f"n{i}.png")
    _png(tmp_path / "test" / "normal_256" / "t0.png")
    _png(tmp_path / "test" / "pneumonia_256" / "p0.png")
    _png(tmp_path / "test" / "pneumonia_256" / "p1.png")
    index = discover(tmp_path)
    assert index.summary() == {
        "root": str(tmp_path),
        "layout": "split-folders",
        "train_normals": 3,
        "test_normal": 1,
        "test_abnormal": 2,
    }


def test_flat_layout_and_csv_manifest(tmp_path):
    _png(tmp_path / "flat" / "normal" / "a.png")
    _png(tmp_path / "flat" / "abnormal" / "b.png")
    flat = discover(tmp_path / "flat")
    assert flat.layout == "flat-folders" and len(flat.train_normals) == 1 and len(flat.test) == 2
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,split\nflat/normal/a.png,normal,train\nflat/abnormal/b.png,1,test\n")
    index = discover(manifest)
    assert [p.name for p in index.train_normals] == ["a.png"]
    assert [(t.path.name, t.label) for t in index.test] == [("b.png", 1)]
    manifest.write_text("path,label\nflat/normal/a.png,maybe\n")
    with pytest.raises(LayoutError, match=r"list\.csv:2: bad label 'maybe'"):
        discover(manifest)


def test_empty_folder_says_what_was_expected(tmp_path):
    with pytest.raises(LayoutError, match="expected class folders"):
        discover(tmp_path)


def test_few_shot_draw_is_seeded_and_disjoint(tmp_path):
    pool = [tmp_path / f"{i:03d}.png" for i in range(50)]
    a = draw_few_shot(pool, 10, 20, seed=1)
    assert a == draw_few_shot(list(reversed(pool)), 10, 20, seed=1)
    assert a != draw_few_shot(pool, 10, 20, seed=2)
    assert len(a.support) == 10 and len(a.validation) == 20
    assert not set(a.support) & set(a.validation)
    with pytest.raises(ValueError, match="only 50"):
        draw_few_shot(pool, 64, 0, seed=0)


def test_loading_reports_bad_files_and_keeps_the_rest(tmp_path):
    good = [_png(tmp_path / f"g{i}.png", 10 * i) for i in range(3)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    loaded = load_images([good[0], bad, good[1], good[2]], Preprocessing(image_size=32), progress=False)
    assert loaded.paths == good and loaded.images.shape == (3, 32, 32)
    assert [f.path for f in loaded.failures] == [bad]
    np.testing.assert_allclose(loaded.images[:, 16, 16], [0, 10 / 255, 20 / 255], atol=1e-5)


@pytest.mark.parametrize("mode", ["pad", "crop"])
def test_pillow_resize_matches_torch_antialiased_bicubic(rng, mode):
    """ppad resizes with Pillow (so the ONNX path needs no torch); it equals the antialiased bicubic
    PyTorch resize that earlier ppad versions, and the shipped backbone's training, used."""
    import torch
    import torch.nn.functional as F

    from ppad.data.resize import ImageResize

    image = rng.random((301, 257)).astype(np.float32)
    resized = ImageResize(image_size=64, resize_mode=mode).resize(image)
    tensor = torch.from_numpy(image)[None, None]
    if mode == "pad":
        left, top = (301 - 257) // 2, 0
        tensor = F.pad(tensor, (left, 301 - 257 - left, top, 0))
        expected = F.interpolate(tensor, size=(64, 64), mode="bicubic", antialias=True)[0, 0]
    else:
        height = round(301 * 64 / 257)
        full = F.interpolate(tensor, size=(height, 64), mode="bicubic", antialias=True)[0, 0]
        expected = full[(height - 64) // 2 : (height - 64) // 2 + 64]
    assert resized.shape == (64, 64) and resized.dtype == np.float32
    np.testing.assert_allclose(resized, expected.clamp(0, 1).numpy(), atol=2e-5)


def test_a_subset_written_as_a_manifest_reads_back_equal(demo_data, tmp_path):
    from ppad.data import write_manifest

    subset = discover(demo_data).subset(train_normals=5, test_per_class=3)
    assert len(subset.train_normals) == 5 and [item.label for item in subset.test] == [0, 0, 0, 1, 1, 1]
    again = discover(write_manifest(subset, tmp_path / "subset.csv"))
    assert again.layout == "csv"
    assert again.train_normals == [path.resolve() for path in subset.train_normals]
    assert again.test == [replace(item, path=item.path.resolve()) for item in subset.test]
