"""Property-based tests: random, truncated and mutated bytes never crash a reader, a batch or the
run-folder loader; each either reads correctly or raises the user error that names the file."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from ppad.backbones import Preprocessing
from ppad.data import ImageReadError, load_images, read_image
from ppad.data.readers import read_image_bytes
from ppad.errors import PpadError
from ppad.runs import RunFolder
from ppad.training import TrainSettings, train_run

FILM = np.random.default_rng(0).integers(0, 255, (24, 32), dtype=np.uint8)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _encoded(kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "dcm":
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns = FILM.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = FILM.tobytes()
        ds.save_as(buffer, enforce_file_format=True)
    else:
        Image.fromarray(FILM).save(buffer, format={"png": "PNG", "jpg": "JPEG", "tif": "TIFF"}[kind])
    return buffer.getvalue()


ENCODED = {kind: _encoded(kind) for kind in ("png", "jpg", "tif", "dcm")}


@st.composite
def damaged(draw) -> tuple[str, bytes]:
    """A valid encoding truncated, with bytes overwritten, or replaced by noise."""
    kind = draw(st.sampled_from(sorted(ENCODED)))
    data = bytearray(ENCODED[kind])
    how = draw(st.sampled_from(["truncate", "mutate", "noise"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "mutate":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    else:
        data = bytearray(draw(st.binary(max_size=600)))
    return kind, bytes(data)


def _check_read(read, name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = read()
        except ImageReadError as error:
            assert name in str(error)
            image = None
    assert not caught, [str(w.message) for w in caught]  # no raw decoder warning reaches the user
    if image is None:
        return
    assert image.ndim == 2 and image.dtype == np.float32
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1


@PROPERTY
@given(damaged())
def test_damaged_bytes_read_or_raise_a_named_error(sample):
    kind, data = sample
    _check_read(lambda: read_image_bytes(data, f"upload.{kind}"), f"upload.{kind}")


@PROPERTY
@given(damaged())
def test_damaged_files_read_or_raise_a_named_error(tmp_path, sample):
    kind, data = sample
    path = tmp_path / f"film.{kind}"
    path.write_bytes(data)
    _check_read(lambda: read_image(path), str(path))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(damaged(), min_size=1, max_size=4))
def test_damaged_files_never_cost_the_rest_of_a_batch(tmp_path, samples):
    good = tmp_path / "good.png"
    good.write_bytes(ENCODED["png"])
    paths = [good]
    for i, (kind, data) in enumerate(samples):
        paths.append(tmp_path / f"bad{i}.{kind}")
        paths[-1].write_bytes(data)
    loaded = load_images(paths, Preprocessing(image_size=32), progress=False)
    assert good in loaded.paths
    assert len(loaded.paths) + len(loaded.failures) == len(paths)  # every file accounted for once
    assert loaded.images.shape == (len(loaded.paths), 32, 32)
    assert {f.path for f in loaded.failures}.isdisjoint(loaded.paths)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, demo_data) -> Path:
    run = tmp_path_factory.mktemp("property-run") / "run"
    settings_ = TrainSettings(shots=6, epochs=1, batch_size=3, validation_size=4)
    train_run(demo_data, run, "tiny", settings=settings_, device="cpu", progress=False)
    return run


RUN_FILES = ["config.json", "manifest.json", "prompts.safetensors", "train_state.pt"]


@st.composite
def damaged_run_file(draw) -> tuple[str, str, int, int]:
    return (
        draw(st.sampled_from(RUN_FILES)),
        draw(st.sampled_from(["truncate", "mutate"])),
        draw(st.integers(0, 10**6)),
        draw(st.integers(0, 255)),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged_run_file())
def test_damaged_run_folders_load_or_raise_a_user_error_naming_the_file(finished_run, tmp_path_factory, damage):
    name, how, position, value = damage
    run = Path(shutil.copytree(finished_run, tmp_path_factory.mktemp("damaged") / "run"))
    data = bytearray((run / name).read_bytes())
    if how == "truncate":
        data = data[: position % len(data)]
    else:
        data[position % len(data)] = value
    (run / name).write_bytes(bytes(data))
    folder = RunFolder(run)
    for load in (lambda: folder.load_model(device="cpu"), folder.read_manifest, folder.load_state):
        try:
            load()
        except PpadError as error:
            assert str(run) in str(error) or "tiny" in str(error), error


def test_a_damaged_setting_that_fails_only_when_the_model_is_built_names_the_config(finished_run, tmp_path):
    """Found by hypothesis: one flipped byte in ``region_sides`` ("anatomical" → " natomical") passed the config's
    reading and failed building the model with an error that named no file."""
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["region_sides"] == "anatomical"
    config["model"]["region_sides"] = " natomical"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        PpadError, match=r"config\.json: cannot rebuild the model \(.*unknown region sides ' natomical'"
    ):
        RunFolder(run).load_model(device="cpu")


def test_a_dicom_with_a_damaged_transfer_syntax_raises_no_raw_warning(tmp_path):
    """Found by hypothesis: one flipped byte in the transfer syntax UID made pydicom warn while
    decoding pixels, after the header was read."""
    data = bytearray(ENCODED["dcm"])
    uid = data.index(b"1.2.840.10008.1.2.1")
    data[uid] = 0
    _check_read(lambda: read_image_bytes(bytes(data), "damaged.dcm"), "damaged.dcm")
