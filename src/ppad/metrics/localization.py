"""Localization against boxes: pointing game and inside-vs-outside pixel AUC, with floors.

Boxes are ``image,finding,x,y,w,h`` rows in the film's own pixel coordinates (``x, y`` the top
left corner), image paths relative to the CSV's folder. A pixel belongs to a box when its centre
does. Both metrics are computed per image on the union of its boxes, then averaged over images:

* **pointing game** — 1 when the map's maximum lies inside a box (no tolerance margin); where
  several pixels tie for the maximum, the share of them inside (the expected hit of a maximum
  picked at random among the ties), so a flat map is neither favoured nor punished by pixel order;
* **pixel AUC** — ``roc_auc_score`` of the map's values, inside the boxes vs outside.

The floors: a centred Gaussian (σ = a quarter of the shorter side; findings cluster in the middle
of a chest film), a lung prior (uniform over the film's lung fields: its pointing game is the
share of the lung fields inside the boxes; the centre prior on a film without trusted lung fields)
and a uniform-random map (expected AUC 0.5, hit rate = the boxes' area share).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ppad.errors import DataError

BOX_COLUMNS = ("image", "finding", "x", "y", "w", "h")
CENTRE_SIGMA = 0.25  # of the shorter side


@dataclass(frozen=True)
class Box:
    finding: str
    x: float
    y: float
    w: float
    h: float


def read_boxes(path: str | Path) -> dict[Path, list[Box]]:
    """Boxes per image (absolute paths, in file order); a bad row is an error naming its line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such boxes file")
    boxes: dict[Path, list[Box]] = defaultdict(list)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(BOX_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DataError(
                f"{path}: a boxes file needs the columns {','.join(BOX_COLUMNS)}; missing {sorted(missing)}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                x, y, w, h = (float(row[key]) for key in "xywh")
            except (TypeError, ValueError):
                raise DataError(f"{path}:{line}: x, y, w, h must be numbers, got {[row[k] for k in 'xywh']}") from None
            if not all(map(math.isfinite, (x, y, w, h))) or w <= 0 or h <= 0 or x < 0 or y < 0:
                raise DataError(f"{path}:{line}: a box needs x, y ≥ 0 and w, h > 0, got {x}, {y}, {w}, {h}")
            if not (row["image"] or "").strip():
                raise DataError(f"{path}:{line}: empty image path")
            boxes[(path.parent / row["image"].strip()).resolve()].append(Box(row["finding"] or "", x, y, w, h))
    if not boxes:
        raise DataError(f"{path}: no boxes")
    return dict(boxes)


def box_mask(boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    """[H, W] union of the boxes (pixels whose centre is inside); a box off the image is an error."""
    rows, cols = np.arange(shape[0]) + 0.5, np.arange(shape[1]) + 0.5
    mask = np.zeros(shape, dtype=bool)
    for box in boxes:
        inside = ((rows >= box.y) & (rows < box.y + box.h))[:, None] & ((cols >= box.x) & (cols < box.x + box.w))
        if not inside.any():
            raise DataError(
                f"{box.finding} box at ({box.x}, {box.y}, {box.w}, {box.h}) covers no pixel of a {shape} image"
            )
        mask |= inside
    return mask


def pointing_hit(amap: np.ndarray, mask: np.ndarray) -> float:
    """1.0 when the map's maximum falls inside the mask, else 0.0; on ties, the share of the tied
    maxima inside (the chance that one picked at random hits)."""
    return float(mask[amap == amap.max()].mean())


def pixel_auc(amap: np.ndarray, mask: np.ndarray) -> float:
    """AUC of map values inside vs outside the mask (NaN if the mask covers all or nothing)."""
    if mask.all() or not mask.any():
        return float("nan")
    return float(roc_auc_score(mask.ravel(), amap.ravel()))


def centre_prior(shape: tuple[int, int]) -> np.ndarray:
    """A Gaussian at the image centre, σ = a quarter of the shorter side."""
    sigma = CENTRE_SIGMA * min(shape)
    rows = (np.arange(shape[0]) + 0.5 - shape[0] / 2) ** 2
    cols = (np.arange(shape[1]) + 0.5 - shape[1] / 2) ** 2
    return np.exp(-(rows[:, None] + cols[None, :]) / (2 * sigma**2)).astype(np.float32)


def lung_prior(lungs: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Uniform over the lung fields ([H, W] boolean: 1 inside, 0 outside); the centre prior when
    there are no trusted lung fields (``None``)."""
    return centre_prior(shape) if lungs is None else lungs.astype(np.float32)


def localization_scores(maps: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, float]:
    """Mean pointing-game hit rate and mean per-image pixel AUC over (map, mask) pairs."""
    if len(maps) != len(masks) or not maps:
        raise ValueError(f"need as many maps as masks, at least one (got {len(maps)} and {len(masks)})")
    for amap, mask in zip(maps, masks):
        if amap.shape != mask.shape:
            raise ValueError(f"map {amap.shape} and box mask {mask.shape} must share the film's shape")
    aucs = np.array([pixel_auc(m, b) for m, b in zip(maps, masks)])
    return {
        "pointing_game": float(np.mean([pointing_hit(m, b) for m, b in zip(maps, masks)])),
        "pixel_auc": float(np.nanmean(aucs)) if not np.isnan(aucs).all() else float("nan"),
        "n_images": len(maps),
    }
