"""Bring a map from the model's square input frame back onto the original film's pixels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ppad.backbones.preprocessing import Preprocessing


def to_original(amap: np.ndarray, shape: tuple[int, int], preprocessing: Preprocessing) -> np.ndarray:
    """[S, S] map in the preprocessed frame → [H, W] map on the film (bilinear).

    Undoes :meth:`Preprocessing.resize`: ``pad`` scales the square back and drops the padding;
    ``crop`` scales back and fills the cropped-away margins with the map's minimum (no evidence).
    """
    height, width = shape
    size = preprocessing.image_size
    if amap.shape != (size, size):
        raise ValueError(f"expected a {size}×{size} map, got shape {amap.shape}")
    if preprocessing.resize_mode == "pad":
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        return _bilinear(amap, (side, side))[top : top + height, left : left + width]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    canvas = np.full((new_h, new_w), amap.min(), dtype=np.float32)
    canvas[top : top + size, left : left + size] = amap
    return _bilinear(canvas, (height, width))


def _bilinear(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def mask_to_original(mask: np.ndarray, shape: tuple[int, int], preprocessing: Preprocessing) -> np.ndarray:
    """[S, S] boolean mask in the preprocessed frame → [H, W] on the film (as :func:`to_original`, then ≥ ½)."""
    return to_original(mask.astype(np.float32), shape, preprocessing) >= 0.5
