"""Image readers returning ppad's canonical form: float32 grayscale in [0, 1], 0 = black.

* PNG/JPEG/TIFF/BMP via Pillow: 8-bit is divided by 255, 16-bit by 65535; colour is converted
  to luminance; truncated files are errors (never silently padded).
* DICOM via pydicom: the modality LUT (rescale slope/intercept) then the VOI LUT/window are
  applied, MONOCHROME1 is inverted so that dense tissue is bright, and the result is scaled
  by its own range.

Every failure is an :class:`ImageReadError` naming the file and the problem.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ppad.errors import PpadError

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES | DICOM_SUFFIXES

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageReadError(PpadError, ValueError):
    """An image that cannot be read; ``str()`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def is_dicom(path: Path) -> bool:
    """By suffix, or by the ``DICM`` magic at byte 128 for suffix-less files."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def read_image(path: str | Path) -> np.ndarray:
    """Read one radiograph as a 2-D float32 array in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    try:
        image = _read_dicom(path) if is_dicom(path) else _read_pillow(path)
    except ImageReadError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoder failure becomes a named error
        raise ImageReadError(path, f"cannot be decoded ({type(error).__name__}: {error})") from error
    if image.ndim != 2 or min(image.shape) < 2:
        raise ImageReadError(path, f"is not a 2-D image (shape {image.shape})")
    if not np.isfinite(image).all():
        raise ImageReadError(path, "contains NaN or infinite values")
    return image


def _read_pillow(path: Path) -> np.ndarray:
    with Image.open(path) as handle:
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


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path)
    if "PixelData" not in dataset:
        raise ImageReadError(path, "DICOM file has no pixel data")
    if int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
        raise ImageReadError(path, "multi-frame DICOM is not a radiograph")
    pixels = apply_modality_lut(dataset.pixel_array, dataset)
    pixels = apply_voi_lut(pixels, dataset).astype(np.float32)
    image = _rescale(pixels)
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = 1.0 - image
    return image


def _rescale(array: np.ndarray) -> np.ndarray:
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array, dtype=np.float32)
    return ((array - low) / (high - low)).astype(np.float32)
