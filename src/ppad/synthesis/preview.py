"""A picture grid of synthesis methods on one image: a row per method, a column per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ppad.synthesis import get_synthesis

LABEL_WIDTH = 130
OUTLINE = (255, 60, 60)


def _cell(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    rgb = np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    if mask is not None and mask.any():
        rgb[mask & ~ndimage.binary_erosion(mask)] = OUTLINE
    return rgb


def synthesis_grid(
    image: np.ndarray, methods: list[str], seeds: int, sources: np.ndarray, region: np.ndarray
) -> Image.Image:
    """Rows: the original, then each method; columns: ``seeds`` draws. Mask outlines in red."""
    size = image.shape[0]
    rows = [("original", [_cell(image, None)] * seeds)]
    for name in methods:
        task = get_synthesis(name, sources=sources)
        draws = [task(image, region, np.random.default_rng(seed)) for seed in range(seeds)]
        rows.append((name, [_cell(d.image, d.mask) for d in draws]))
    canvas = Image.new("RGB", (LABEL_WIDTH + seeds * (size + 4), len(rows) * (size + 4)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, cells) in enumerate(rows):
        top = r * (size + 4)
        draw.text((6, top + size // 2 - 6), name, fill="black")
        for c, cell in enumerate(cells):
            canvas.paste(Image.fromarray(cell), (LABEL_WIDTH + c * (size + 4), top))
    return canvas


def write_synthesis_grid(path: str | Path, *args, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    synthesis_grid(*args, **kwargs).save(path)
    return path
