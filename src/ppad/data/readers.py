"""Image readers returning ppad's canonical form: float32 grayscale in [0, 1], 0 = black.

* PNG/JPEG/TIFF/BMP via Pillow: 8-bit is divided by 255, 16-bit by 65535; colour is converted
  to luminance; truncated files are errors (never silently padded).
* DICOM via pydicom: the modality LUT (rescale slope/intercept) then the VOI LUT/window are
  applied and the result is divided by the output range those steps define from the stored bit
  depth (``BitsStored``, the LUT's depth, or the window), never by the image's own min–max, so a
  film reads the same as DICOM and as PNG; MONOCHROME1 is inverted so dense tissue is bright.
  A file without the ``DICM`` marker is "not a DICOM file" (pydicom's advice to force reading
  never reaches the user).
* Images above :data:`MAX_PIXELS` (far beyond any radiograph) are refused before decoding,
  never with Pillow's raw decompression-bomb warning.

Files are read with :func:`read_image`, bytes in memory (an upload) with :func:`read_image_bytes`.
Every failure is an :class:`ImageReadError` naming the file and the problem.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ppad.errors import FileProblem

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES | DICOM_SUFFIXES

MAX_PIXELS = 50_000_000  # a 7000² film; detector plates are at most about 4300 × 3500

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageReadError(FileProblem):
    """An image that cannot be read; ``str()`` is ``"<path>: <problem>"``."""


class ImageTooLargeError(ImageReadError):
    """An image with more pixels than the caller allows, refused before its pixels are decoded."""


class _NamedBytes(BytesIO):
    """Bytes in memory that decoders' messages call by their name (Pillow quotes its source).

    The name is kept out of a ``name`` attribute: pydicom would take that for a path to stat."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self._label = name

    def __repr__(self) -> str:
        return repr(self._label)


def is_dicom(path: Path) -> bool:
    """By suffix, or by the ``DICM`` magic at byte 128 for suffix-less files."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def read_image(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read one radiograph as a 2-D float32 array in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "is empty (0 bytes)")
    if is_dicom(path):
        return _decode(path, lambda: _read_dicom(path, path, max_pixels))
    return _decode(path, lambda: _read_pillow(path, path, max_pixels))


def read_image_bytes(data: bytes, name: str, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read one radiograph from bytes in memory, like :func:`read_image`; ``name`` names it in errors.

    DICOM is recognised by the ``DICM`` magic at byte 128 or a DICOM suffix of ``name``. With
    ``max_pixels``, a larger image raises :class:`ImageTooLargeError` before its pixels are decoded.
    """
    if not data:
        raise ImageReadError(name, "is empty (0 bytes)")
    source = _NamedBytes(data, name)
    if data[128:132] == b"DICM" or Path(name).suffix.lower() in DICOM_SUFFIXES:
        return _decode(name, lambda: _read_dicom(source, name, max_pixels))
    return _decode(name, lambda: _read_pillow(source, name, max_pixels))


def _decode(name: str | Path, read: Callable[[], np.ndarray]) -> np.ndarray:
    try:
        image = read()
    except ImageReadError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoder failure becomes a named error
        reason = " ".join(str(error).split())  # decoders' multi-line messages become one line
        raise ImageReadError(name, f"cannot be decoded ({type(error).__name__}: {reason})") from error
    if image.ndim != 2 or min(image.shape) < 2:
        raise ImageReadError(name, f"is not a 2-D image (shape {image.shape})")
    if not np.isfinite(image).all():
        raise ImageReadError(name, "contains NaN or infinite values")
    return image


def _check_pixels(name: str | Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(name, _too_many_pixels(width, height, max_pixels))


def _too_many_pixels(width: int, height: int, limit: int) -> str:
    return f"has {width}×{height} = {width * height:,} pixels, more than {limit:,}"


def _header_size(source: Path | BinaryIO) -> tuple[int, int]:
    """Width and height from an image's header, as Pillow's format plugins read it, without the
    decompression-bomb check that makes ``Image.open`` refuse before telling the size."""
    with open(source, "rb") if isinstance(source, Path) else nullcontext(source) as handle:
        handle.seek(0)
        prefix = handle.read(16)
        for format_id in Image.ID:
            factory, accept = Image.OPEN[format_id]
            accepted = accept is None or accept(prefix)
            if accepted and not isinstance(accepted, str):  # a string is a plugin's warning, as in Image.open
                handle.seek(0)
                try:
                    return factory(handle, "").size
                except (SyntaxError, IndexError, TypeError, struct.error):  # what Image.open tries past
                    continue
    raise AssertionError("Pillow refused an image as too large that none of its plugins opens")


def _read_pillow(source: Path | BinaryIO, name: str | Path, max_pixels: int | None = None) -> np.ndarray:
    with warnings.catch_warnings():  # decoder warnings (bomb size, corrupt EXIF) never reach the user raw
        warnings.simplefilter("ignore")
        try:
            opened = Image.open(source)
        except Image.DecompressionBombError as error:  # Pillow's own limit, which names no size
            width, height = _header_size(source)
            refused_above = 2 * Image.MAX_IMAGE_PIXELS  # where Pillow refuses (it warns from MAX_IMAGE_PIXELS)
            limit = refused_above if max_pixels is None else min(max_pixels, refused_above)
            raise ImageTooLargeError(name, _too_many_pixels(width, height, limit)) from error
        with opened as handle:
            _check_pixels(name, handle.width, handle.height, max_pixels)
            handle.load()
            image = ImageOps.exif_transpose(handle)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image).astype(np.float32)
        peak = 65535.0 if array.max(initial=0) <= 65535 else float(array.max())
        return np.clip(array / peak, 0.0, 1.0)
    if image.mode == "F":
        return _rescale(np.asarray(image, dtype=np.float32))
    if image.mode != "L":
        image = image.convert("L")  # RGB(A), palette, 1-bit: ITU-R 601 luminance
    return np.asarray(image, dtype=np.float32) / 255.0


def _read_dicom(source: Path | BinaryIO, name: str | Path, max_pixels: int | None = None) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    with warnings.catch_warnings():  # header and pixel decoding warnings never reach the user raw
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(source)
        except InvalidDicomError as error:  # pydicom's "Use force=True" is no advice for a user
            raise ImageReadError(name, "cannot be decoded: not a DICOM file (no 'DICM' marker at byte 128)") from error
        if "PixelData" not in dataset:
            raise ImageReadError(name, "DICOM file has no pixel data")
        if int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
            raise ImageReadError(name, "multi-frame DICOM is not a radiograph")
        _check_pixels(name, int(dataset.Columns), int(dataset.Rows), max_pixels)
        pixels = apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset)
    low, high = _dicom_output_range(dataset)
    image = np.clip((pixels.astype(np.float64) - low) / (high - low), 0.0, 1.0).astype(np.float32)
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = 1.0 - image
    return image


def _dicom_output_range(dataset) -> tuple[float, float]:
    """The range of values after the modality and VOI steps, as the standard defines it: a VOI or
    modality LUT's bit depth, else the stored bit depth through rescale slope/intercept (which
    windowing keeps). PS3.3 C.11.1–C.11.2."""
    for sequence in ("VOILUTSequence", "ModalityLUTSequence"):
        if dataset.get(sequence):
            return 0.0, float(2 ** int(dataset[sequence][0].LUTDescriptor[2]) - 1)
    bits = int(dataset.get("BitsStored") or 8 * dataset.pixel_array.itemsize)
    signed = int(dataset.get("PixelRepresentation") or 0) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope = float(dataset.get("RescaleSlope") or 1.0)
    intercept = float(dataset.get("RescaleIntercept") or 0.0)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    if ends[1] <= ends[0]:
        raise ValueError(f"stored range {low}..{high} with rescale slope {slope} is empty")
    return ends[0], ends[1]


def _rescale(array: np.ndarray) -> np.ndarray:
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array, dtype=np.float32)
    return ((array - low) / (high - low)).astype(np.float32)
