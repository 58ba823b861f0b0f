"""Image preprocessing declared by a backbone.

Every image in ppad lives in one canonical intensity range: a float32 grayscale array in
[0, 1] (0 = black). Preprocessing happens in two explicit stages so that anomaly synthesis
can work on the resized image in that range:

1. :meth:`Preprocessing.resize` — any-size [0, 1] image → square ``image_size`` image,
   either by padding to a square (``"pad"``, CheXzero's choice) or by resizing the short
   side and cropping the centre (``"crop"``, OpenAI CLIP's choice).
2. :meth:`Preprocessing.normalize` — [0, 1] batch → 3-channel, mean/std-normalised tensor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ppad.errors import SettingsError

ResizeMode = Literal["pad", "crop"]
RESIZE_MODES: tuple[str, ...] = ("pad", "crop")


@dataclass(frozen=True)
class Preprocessing:
    """How a backbone expects its input: size, resize mode and normalisation (0–1 scale)."""

    image_size: int = 224
    mean: float = 0.39799
    std: float = 0.32721
    resize_mode: ResizeMode = "pad"

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise SettingsError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.image_size <= 0 or self.std <= 0:
            raise SettingsError("image_size and std must be positive")

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Resize a [0, 1] grayscale image to ``image_size`` × ``image_size`` (bicubic)."""
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        height, width = image.shape
        size = self.image_size
        if self.resize_mode == "pad":
            side = max(height, width)
            top, left = (side - height) // 2, (side - width) // 2
            tensor = F.pad(tensor, (left, side - width - left, top, side - height - top))
            tensor = _bicubic(tensor, (size, size))
        else:
            scale = size / min(height, width)
            new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
            tensor = _bicubic(tensor, (new_h, new_w))
            top, left = (new_h - size) // 2, (new_w - size) // 2
            tensor = tensor[..., top : top + size, left : left + size]
        return tensor[0, 0].clamp_(0.0, 1.0).numpy()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W] or [B, 1, H, W] batch in [0, 1] → [B, 3, H, W] normalised model input."""
        if images.ndim == 3:
            images = images[:, None]
        return ((images - self.mean) / self.std).expand(-1, 3, -1, -1)

    def to_dict(self) -> dict:
        return asdict(self)


def _bicubic(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == size:
        return tensor
    return F.interpolate(tensor, size=size, mode="bicubic", align_corners=False, antialias=True)
