"""The anomaly map of a scored film, and the map drawn over the film as a PNG (:mod:`ppad.maps`)."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ppad.methods.base import PromptDetector

if TYPE_CHECKING:
    from ppad.lungs import LungFields


def anomaly_map(model: PromptDetector, image: np.ndarray) -> tuple[np.ndarray, LungFields]:
    """[S, S] map of one preprocessed image ([1, S, S]) by the default map method, restricted to
    its lung fields where trusted (as ``ppad score --maps``), and those lung fields."""
    from ppad.maps import anomaly_maps
    from ppad.maps.lungs import segment_lungs

    fields = segment_lungs(image)
    return anomaly_maps(model, image, fields=fields)[0], fields[0]


def overlay_png(
    model: PromptDetector,
    film: np.ndarray,
    amap: np.ndarray,
    lungs: LungFields,
    views: np.ndarray,
    score: float,
    title: str = "",
) -> str:
    """Base64 PNG of ``amap`` ([S, S], the model's frame, by the default map method) over ``film``,
    with ``title`` (the file name), the views and score; the legend says whether the film's
    ``lungs`` were trusted, so restricted the map.

    The film is scaled down to the overlay's size first, so a 4000-pixel film is not blended
    at full resolution only to be shrunk afterwards."""
    from ppad.maps import MAP_METHODS, render_overlay, resolve_map_method, to_original
    from ppad.maps.lungs import legend_meaning
    from ppad.maps.overlay import MAX_SIDE

    shown = _fit(film, MAX_SIDE)
    method = resolve_map_method(model)
    picture = render_overlay(
        shown,
        to_original(amap, shown.shape, model.preprocessing),
        model.view_names,
        views,
        score,
        title,
        method,
        legend_meaning(MAP_METHODS[method].meaning, lungs),
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fit(film: np.ndarray, side: int) -> np.ndarray:
    height, width = film.shape
    scale = side / max(height, width)
    if scale >= 1:
        return film
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return np.asarray(Image.fromarray(film).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
