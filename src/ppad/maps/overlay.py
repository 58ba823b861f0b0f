"""An anomaly map drawn over its film: gray film, perceptual colours, legend, views and score."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from ppad.metrics import DEFAULT_THRESHOLD
from ppad.scoring.rows import view_label

COLORMAP = "inferno"
MAX_SIDE = 1024  # overlays of larger films are scaled down to this
MIN_SIDE = 512  # smaller films (224-px data sets) are scaled up to this, so a reader can see them
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
    meaning: str = "",
) -> Image.Image:
    """RGB image: the film (gray) with the map blended in ``inferno``, and a side panel holding the
    file name, the score, each view's abnormal probability and the colour legend: which map, what a
    bright colour means, and the map values at its ends (``≥``/``≤`` where the display clips)."""
    if film.shape != amap.shape:
        raise ValueError(f"film {film.shape} and map {amap.shape} must have the same shape")
    (low, high), ends = display_range(amap)
    scaled = np.clip((amap - low) / max(high - low, 1e-12), 0.0, 1.0)
    colour = colormaps[COLORMAP](scaled)[..., :3]
    alpha = OPACITY * scaled[..., None]
    gray = np.clip(film, 0.0, 1.0)[..., None]
    picture = _displayed(Image.fromarray(np.uint8(np.round(255 * ((1 - alpha) * gray + alpha * colour)))))

    height = max(picture.height, 320)
    unit = max(12, height // 40)  # text size
    font = ImageFont.load_default(size=unit)
    panel = 16 * unit
    canvas = Image.new("RGB", (picture.width + panel, height), "black")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y, width = picture.width + unit, unit, panel - 2 * unit
    for line in wrap_lines(draw, font, title, width):
        draw.text((x, y), line, fill="white", font=font)
        y += int(1.3 * unit)
    y += unit if title else 0
    decision = "abnormal" if score > DEFAULT_THRESHOLD else "normal"
    draw.text((x, y), f"score {score:.3f}: {decision}", fill="white", font=font)
    y += 2 * unit
    for name, p in zip(view_names, np.asarray(view_probabilities, dtype=float)):
        draw.text((x, y), f"{view_label(name):<12} {p:.3f}", fill="white", font=font)
        y += int(1.5 * unit)
    y += unit
    for line in [f"colour: {map_name} map", *wrap_lines(draw, font, meaning, width)]:
        draw.text((x, y), line, fill="white", font=font)
        y += int(1.3 * unit)
    _legend(canvas, draw, font, (x, y + unit // 2), (unit, height - y - 2 * unit), ends)
    return canvas


def _displayed(picture: Image.Image) -> Image.Image:
    """The blended film at a size a reader can use: at most MAX_SIDE, at least MIN_SIDE."""
    side = max(picture.size)
    target = MAX_SIDE if side > MAX_SIDE else MIN_SIDE if side < MIN_SIDE else side
    if target == side:
        return picture
    size = tuple(max(1, round(n * target / side)) for n in picture.size)
    return picture.resize(size, Image.Resampling.LANCZOS)


def display_range(amap: np.ndarray) -> tuple[tuple[float, float], tuple[str, str]]:
    """The map values at the colour scale's ends (percentiles :data:`DISPLAY_RANGE`, so one hot
    pixel does not wash out the rest) and their legend labels, marked ``<=``/``>=`` where the map
    runs beyond them."""
    low, high = (float(v) for v in np.percentile(amap, DISPLAY_RANGE))

    def label(end: float, extreme: float, sign: str) -> str:
        return f"{end:.3g}" if np.isclose(end, extreme) else f"{sign} {end:.3g}"

    return (low, high), (label(low, float(amap.min()), "<="), label(high, float(amap.max()), ">="))


def wrap_lines(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, text: str, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels: at spaces, and a word too long for
    a line (a file name) mid-word."""

    def fits(line: str) -> bool:
        return draw.textlength(line, font=font) <= width

    lines: list[str] = []
    for word in text.split():
        while not fits(word) and len(word) > 1:
            cut = next((n for n in range(len(word) - 1, 0, -1) if fits(word[:n])), 1)
            lines.append(word[:cut])
            word = word[cut:]
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _legend(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont,
    at: tuple[int, int],
    size: tuple[int, int],
    ends: tuple[str, str],
) -> None:
    """A vertical colour bar, high at the top, its ends labelled with map values."""
    (x, y), (width, height) = at, size
    if height < 20:
        return
    ramp = np.linspace(1.0, 0.0, height)
    bar = np.uint8(np.round(255 * colormaps[COLORMAP](ramp)[:, :3]))
    canvas.paste(Image.fromarray(np.repeat(bar[:, None], width, axis=1)), (x, y))
    low, high = ends
    draw.text((x + width + 4, y), f"{high} (bright)", fill="white", font=font)
    draw.text((x + width + 4, y + height - font.size), f"{low} (dark)", fill="white", font=font)
