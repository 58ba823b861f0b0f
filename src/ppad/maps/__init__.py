"""Anomaly maps: where on a film a model sees the abnormality, by several methods, and overlays."""

from ppad.maps.files import FilmMaps, MapReport, film_maps, write_maps
from ppad.maps.geometry import to_original
from ppad.maps.overlay import render_overlay
from ppad.maps.registry import (
    DEFAULT_MAP_METHOD,
    MAP_METHODS,
    MapMethod,
    anomaly_maps,
    applicable_map_methods,
    get_map_method,
    resolve_map_method,
)

__all__ = [
    "DEFAULT_MAP_METHOD",
    "FilmMaps",
    "MapReport",
    "film_maps",
    "write_maps",
    "MAP_METHODS",
    "MapMethod",
    "anomaly_maps",
    "applicable_map_methods",
    "get_map_method",
    "render_overlay",
    "resolve_map_method",
    "to_original",
]
