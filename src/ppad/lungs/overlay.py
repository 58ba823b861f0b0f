"""A film with its lung-field outlines and R / L markers, for a reader to check the segmenter."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ppad.lungs.postprocess import LungFields

DISPLAY_SIDE = 512  # overlays are drawn with this long side, whatever the film's size
RIGHT_COLOUR = (0, 220, 255)  # cyan: patient's right lung
LEFT_COLOUR = (255, 200, 0)  # amber: patient's left lung
FLAGGED_COLOUR = (255, 60, 60)  # the untrusted mask and the fallback halves


def render_lung_overlay(film: np.ndarray, fields: LungFields, title: str = "") -> Image.Image:
    """RGB image: the grey film, each lung's outline with R / L at its centre; a flagged film shows
    its untrusted mask in red, the midline of the fallback halves and the reason."""
    scale = DISPLAY_SIDE / max(film.shape)
    size = (max(1, round(film.shape[1] * scale)), max(1, round(film.shape[0] * scale)))
    grey = Image.fromarray(np.uint8(np.round(255 * np.clip(film, 0, 1)))).resize(size, Image.Resampling.BILINEAR)
    picture = np.asarray(grey.convert("RGB")).copy()
    right, left = fields.lung_right, fields.lung_left
    colours = (RIGHT_COLOUR, LEFT_COLOUR) if fields.trusted else (FLAGGED_COLOUR, FLAGGED_COLOUR)
    for side, colour in zip((right, left), colours):
        picture[_outline(_resized(side, size))] = colour
    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    unit = max(12, size[1] // 28)
    font = ImageFont.load_default(size=unit)

    def write(xy: tuple[float, float], text: str, colour: tuple[int, int, int] | str, anchor: str = "la") -> None:
        draw.text(xy, text, fill=colour, font=font, anchor=anchor, stroke_width=2, stroke_fill="black")

    if fields.trusted:
        for letter, side, colour in (("R", right, RIGHT_COLOUR), ("L", left, LEFT_COLOUR)):
            row, column = np.array(ndimage.center_of_mass(side)) * scale
            write((column, row), letter, colour, "mm")
    else:
        draw.line([(size[0] // 2, 0), (size[0] // 2, size[1])], fill=FLAGGED_COLOUR, width=2)
        write((unit, size[1] // 2), "R", FLAGGED_COLOUR)
        write((size[0] - 2 * unit, size[1] // 2), "L", FLAGGED_COLOUR)
    status = "lungs" if fields.trusted else f"halves: {fields.reason}"
    for line_number, line in enumerate(filter(None, (title, status))):
        write((4, 4 + line_number * (unit + 2)), line, "white")
    return canvas


def _resized(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(np.uint8(mask) * 255).resize(size, Image.Resampling.BILINEAR)) > 127


def _outline(mask: np.ndarray) -> np.ndarray:
    """A two-pixel-wide inner boundary."""
    return mask & ~ndimage.binary_erosion(mask, iterations=2)
