"""Resizing a film to the model's square input: numpy and Pillow only, so the ONNX runtime path
(and a user's own script) resizes exactly as training did.

Every image in ppad lives in one canonical intensity range: a float32 grayscale array in [0, 1]
(0 = black). ``pad`` pads to a square, then resizes (CheXzero's choice); ``crop`` resizes the
short side and crops the centre (OpenAI CLIP's). Resampling is Pillow's antialiased bicubic on
32-bit float images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from ppad.errors import SettingsError

ResizeMode = Literal["pad", "crop"]
RESIZE_MODES: tuple[str, ...] = ("pad", "crop")


@dataclass(frozen=True)
class ImageResize:
    """Any-size [0, 1] grayscale image → ``image_size`` × ``image_size`` float32 in [0, 1]."""

    image_size: int = 224
    resize_mode: ResizeMode = "pad"

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise SettingsError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.image_size <= 0:
            raise SettingsError("image_size must be positive")

    def resize(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
        image = np.asarray(image, dtype=np.float32)
        height, width = image.shape
        size = self.image_size
        if self.resize_mode == "pad":
            side = max(height, width)
            top, left = (side - height) // 2, (side - width) // 2
            square = np.zeros((side, side), dtype=np.float32)
            square[top : top + height, left : left + width] = image
            resized = _bicubic(square, size, size)
        else:
            scale = size / min(height, width)
            new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
            top, left = (new_h - size) // 2, (new_w - size) // 2
            resized = _bicubic(image, new_h, new_w)[top : top + size, left : left + size]
        return np.clip(resized, 0.0, 1.0)


def _bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape == (height, width):
        return image.copy()
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)
