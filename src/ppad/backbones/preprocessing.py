"""Image preprocessing declared by a backbone.

Two explicit stages, so that anomaly synthesis can work on the resized image in ppad's one
canonical intensity range ([0, 1] grayscale float32):

1. :meth:`Preprocessing.resize` (:class:`~ppad.data.resize.ImageResize`, numpy and Pillow only)
   — any-size [0, 1] image → square ``image_size`` image, padded or centre-cropped.
2. :meth:`Preprocessing.normalize` — [0, 1] batch → 3-channel, mean/std-normalised tensor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ppad.data.resize import ImageResize
from ppad.errors import SettingsError


@dataclass(frozen=True)
class Preprocessing(ImageResize):
    """How a backbone expects its input: size, resize mode and normalisation (0–1 scale)."""

    mean: float = 0.39799
    std: float = 0.32721

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.std <= 0:
            raise SettingsError("std must be positive")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W] or [B, 1, H, W] batch in [0, 1] → [B, 3, H, W] normalised model input."""
        if images.ndim == 3:
            images = images[:, None]
        return ((images - self.mean) / self.std).expand(-1, 3, -1, -1)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised [B, 3, H, W] model input → the [B, H, W] batch in [0, 1] it came from."""
        return images[:, 0] * self.std + self.mean

    def to_dict(self) -> dict:
        return asdict(self)
