"""``ppad evaluate --boxes``: a model's anomaly maps against radiologist boxes, beside two floors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ppad.errors import DataError
from ppad.maps import DEFAULT_MAP_METHOD, resolve_map_method
from ppad.maps.files import film_maps
from ppad.methods.base import PromptDetector
from ppad.metrics.localization import Box, box_mask, centre_prior, localization_scores, read_boxes

CENTRE, RANDOM = "centre prior", "uniform random"


def evaluate_localization(
    model: PromptDetector,
    boxes_csv: str | Path,
    batch_size: int = 16,
    map_methods: Sequence[str] = (DEFAULT_MAP_METHOD,),
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Pointing game and mean per-image pixel AUC of each map method, the centre prior and a
    uniform-random map (seeded), on every readable film of the boxes file, at the film's resolution."""
    boxes = read_boxes(boxes_csv)
    paths = list(boxes)
    names = list(dict.fromkeys(resolve_map_method(model, name) for name in map_methods))
    maps: dict[str, list[np.ndarray]] = {name: [] for name in names}
    masks, shapes, read, failures = [], [], [], []
    for index, name in enumerate(names):
        for chunk in film_maps(model, paths, name, batch_size, progress):
            maps[name].extend(chunk.maps)
            if index == 0:
                read.extend(chunk.paths)
                failures.extend(f"{f.path}: {f.problem}" for f in chunk.failures)
                masks.extend(_mask(p, boxes[p], f.shape) for p, f in zip(chunk.paths, chunk.films))
                shapes.extend(f.shape for f in chunk.films)
    rng = np.random.default_rng(seed)
    maps[CENTRE] = [centre_prior(shape) for shape in shapes]
    maps[RANDOM] = [rng.random(shape) for shape in shapes]
    return {
        "boxes": str(boxes_csv),
        "n_images": len(masks),
        "n_boxes": sum(len(boxes[p]) for p in read),
        "seed": seed,
        "scores": {name: localization_scores(values, masks) for name, values in maps.items()} if masks else {},
        "unreadable": failures,
    }


def _mask(path: Path, boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    try:
        return box_mask(boxes, shape)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def format_localization(result: dict) -> str:
    """A small table: one row per map, pointing game and pixel AUC side by side."""
    lines = [
        f"localization on {result['n_images']} films, {result['n_boxes']} boxes ({result['boxes']})",
        f"{'map':<16} {'pointing game':>13} {'pixel AUC':>10}",
    ]
    for name, score in result["scores"].items():
        lines.append(f"{name:<16} {score['pointing_game']:>13.3f} {score['pixel_auc']:>10.3f}")
    lines.append("pointing game: map maximum inside a box; pixel AUC: inside vs outside, per film, then mean")
    lines.extend(f"unreadable: {failure}" for failure in result["unreadable"])
    return "\n".join(lines)
