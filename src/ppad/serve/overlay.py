"""The anomaly map of a scored film, and the map drawn over the film as a PNG (:mod:`ppad.maps`)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from ppad.methods.base import PromptDetector


def anomaly_map(model: PromptDetector, image: np.ndarray) -> np.ndarray:
    """[S, S] map of one preprocessed image ([1, S, S]) by the default map method."""
    from ppad.maps import anomaly_maps

    return anomaly_maps(model, image)[0]


def overlay_png(
    model: PromptDetector, film: np.ndarray, amap: np.ndarray, views: np.ndarray, score: float, title: str = ""
) -> str:
    """Base64 PNG of ``amap`` ([S, S], the model's frame, by the default map method) over ``film``,
    with ``title`` (the file name), the views and score.

    The film is scaled down to the overlay's size first, so a 4000-pixel film is not blended
    at full resolution only to be shrunk afterwards."""
    from ppad.maps import MAP_METHODS, render_overlay, resolve_map_method, to_original
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
        MAP_METHODS[method].meaning,
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
