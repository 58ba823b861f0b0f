"""``ppad evaluate --boxes``: a model's anomaly maps against radiologist boxes, beside three floors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ppad.errors import DataError
from ppad.maps import DEFAULT_MAP_METHOD, resolve_map_method
from ppad.maps.files import FilmMaps, film_maps
from ppad.maps.lungs import lungs_on_film, segment_lungs
from ppad.methods.base import PromptDetector
from ppad.metrics.localization import Box, box_mask, centre_prior, localization_scores, lung_prior, read_boxes

if TYPE_CHECKING:
    from ppad.lungs import LungFields

CENTRE, LUNGS, RANDOM = "centre prior", "lung prior", "uniform random"


def evaluate_localization(
    model: PromptDetector,
    boxes_csv: str | Path,
    batch_size: int = 16,
    map_methods: Sequence[str] = (DEFAULT_MAP_METHOD,),
    seed: int = 0,
    progress: bool = True,
    lungs: bool = True,
) -> dict:
    """Pointing game and mean per-image pixel AUC of each map method (restricted to the lung fields
    where they are trusted, with ``lungs``), the centre prior, the lung prior and a uniform-random
    map (seeded), on every readable film of the boxes file, at the film's resolution."""
    boxes = read_boxes(boxes_csv)
    names = list(dict.fromkeys(resolve_map_method(model, name) for name in map_methods))
    maps: dict[str, list[np.ndarray]] = {name: [] for name in [*names, CENTRE, LUNGS]}
    masks, read, failures, untrusted = [], [], [], []
    for chunk in film_maps(model, list(boxes), names, batch_size, progress, lungs):
        read.extend(chunk.paths)
        failures.extend(f"{f.path}: {f.problem}" for f in chunk.failures)
        masks.extend(_mask(p, boxes[p], f.shape) for p, f in zip(chunk.paths, chunk.films))
        for name in names:
            maps[name].extend(chunk.maps[name])
        maps[CENTRE].extend(centre_prior(f.shape) for f in chunk.films)
        for path, film, fields in zip(chunk.paths, chunk.films, _lungs(chunk)):
            maps[LUNGS].append(lung_prior(lungs_on_film(fields, film.shape, model.preprocessing), film.shape))
            if not fields.trusted:
                untrusted.append(f"{path}: {fields.reason}")
    rng = np.random.default_rng(seed)
    maps[RANDOM] = [rng.random(mask.shape) for mask in masks]
    return {
        "boxes": str(boxes_csv),
        "n_images": len(masks),
        "n_boxes": sum(len(boxes[p]) for p in read),
        "seed": seed,
        "map_lungs": lungs,
        "scores": {name: localization_scores(values, masks) for name, values in maps.items()} if masks else {},
        "untrusted_lungs": untrusted,
        "unreadable": failures,
    }


def _lungs(chunk: FilmMaps) -> list[LungFields]:
    """The chunk's lung fields: those its maps were restricted with, or segmented for the lung prior."""
    return chunk.lungs if chunk.lungs is not None else segment_lungs(chunk.images)


def _mask(path: Path, boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    try:
        return box_mask(boxes, shape)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def format_localization(result: dict) -> str:
    """A small table: one row per map, pointing game and pixel AUC side by side."""
    untrusted = len(result["untrusted_lungs"])
    where = "restricted to the lung fields" if result["map_lungs"] else "over the whole film (--no-map-lungs)"
    lines = [
        f"localization on {result['n_images']} films, {result['n_boxes']} boxes ({result['boxes']})",
        f"maps {where}; lung fields not trusted on {untrusted} films (maps whole, lung prior = centre prior)",
        f"{'map':<16} {'pointing game':>13} {'pixel AUC':>10}",
    ]
    for name, score in result["scores"].items():
        lines.append(f"{name:<16} {score['pointing_game']:>13.3f} {score['pixel_auc']:>10.3f}")
    lines.append("pointing game: map maximum inside a box (ties: share inside); pixel AUC: inside vs outside, per film")
    lines.extend(f"lung fields not trusted: {film}" for film in result["untrusted_lungs"])
    lines.extend(f"unreadable: {failure}" for failure in result["unreadable"])
    return "\n".join(lines)
