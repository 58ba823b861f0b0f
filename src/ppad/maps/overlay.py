"""An anomaly map drawn over its film: gray film, perceptual colours, legend, views and score."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from ppad.scoring.rows import view_label

COLORMAP = "inferno"
MAX_SIDE = 1024  # overlays of larger films are scaled down to this
OPACITY = 0.65  # of the colour at the map's top; low values fade to the bare film
DISPLAY_RANGE = (1.0, 99.5)  # percentiles of the map mapped to the ends of the colour scale


def render_overlay(
    film: np.ndarray,
    amap: np.ndarray,
    view_names: list[str],
    view_probabilities: np.ndarray,
    score: float,
    title: str = "",
    map_name: str = "map",
) -> Image.Image:
    """RGB image: the film (gray) with the map blended in ``inferno``, and a side panel holding the
    colour legend (in the map's own units), each view's abnormal probability and the final score."""
    if film.shape != amap.shape:
        raise ValueError(f"film {film.shape} and map {amap.shape} must have the same shape")
    low, high = np.percentile(amap, DISPLAY_RANGE)
    scaled = np.clip((amap - low) / max(high - low, 1e-12), 0.0, 1.0)
    colour = colormaps[COLORMAP](scaled)[..., :3]
    alpha = OPACITY * scaled[..., None]
    gray = np.clip(film, 0.0, 1.0)[..., None]
    picture = Image.fromarray(np.uint8(np.round(255 * ((1 - alpha) * gray + alpha * colour))))
    picture.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)

    height = max(picture.height, 320)
    unit = max(12, height // 40)  # text size
    font = ImageFont.load_default(size=unit)
    panel = 14 * unit
    canvas = Image.new("RGB", (picture.width + panel, height), "black")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = picture.width + unit
    y = unit
    if title:
        draw.text((x, y), title[:28], fill="white", font=font)
        y += 2 * unit
    draw.text((x, y), f"score {score:.3f}", fill="white", font=font)
    y += 2 * unit
    for name, p in zip(view_names, np.asarray(view_probabilities, dtype=float)):
        draw.text((x, y), f"{view_label(name):<12} {p:.3f}", fill="white", font=font)
        y += int(1.5 * unit)
    _legend(canvas, draw, font, (x, y + unit), (unit, height - y - 3 * unit), (low, high), map_name)
    return canvas


def _legend(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont,
    at: tuple[int, int],
    size: tuple[int, int],
    span: tuple[float, float],
    label: str,
) -> None:
    """A vertical colour bar, high at the top, its ends labelled with map values, its middle named."""
    (x, y), (width, height) = at, size
    if height < 20:
        return
    ramp = np.linspace(1.0, 0.0, height)
    bar = np.uint8(np.round(255 * colormaps[COLORMAP](ramp)[:, :3]))
    canvas.paste(Image.fromarray(np.repeat(bar[:, None], width, axis=1)), (x, y))
    low, high = span
    draw.text((x + width + 4, y), f"{high:.3g}", fill="white", font=font)
    draw.text((x + width + 4, y + height - font.size), f"{low:.3g}", fill="white", font=font)
    draw.text((x + width + 4, y + height // 2 - font.size // 2), label, fill="white", font=font)
