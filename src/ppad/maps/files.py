"""Maps for files: read films, map them in chunks, write each map and its overlay."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from ppad.data.readers import ImageReadError, read_image
from ppad.io import atomic_write, unique_stems
from ppad.maps.geometry import to_original
from ppad.maps.lungs import legend_meaning, segment_lungs
from ppad.maps.overlay import render_overlay
from ppad.maps.registry import DEFAULT_MAP_METHOD, MAP_METHODS, anomaly_maps, resolve_map_method
from ppad.methods.base import PromptDetector
from ppad.scoring.scorer import predict_views

if TYPE_CHECKING:
    from ppad.lungs import LungFields

CHUNK = 32  # films held in memory at a time


@dataclass
class FilmMaps:
    """Readable films of one chunk, their maps on the films' own pixels (per map method), their
    lung fields in the maps' frame (``None`` when the maps are not restricted to the lungs), and
    the unreadable files."""

    paths: list[Path]
    films: list[np.ndarray]
    maps: dict[str, list[np.ndarray]]
    images: np.ndarray  # [n, S, S] the preprocessed films
    lungs: list[LungFields] | None
    failures: list[ImageReadError]


def film_maps(
    model: PromptDetector,
    paths: list[Path],
    methods: Sequence[str] = (DEFAULT_MAP_METHOD,),
    batch_size: int = 16,
    progress: bool = True,
    lungs: bool = True,
) -> Iterator[FilmMaps]:
    """Read ``paths`` in chunks and map them by each method (the lungs segmented once a chunk);
    unreadable files are reported, never fatal."""
    for start in tqdm(range(0, len(paths), CHUNK), desc="maps", unit="chunk", disable=not progress, leave=False):
        kept, films, failures = [], [], []
        for path in paths[start : start + CHUNK]:
            try:
                films.append(read_image(path))
                kept.append(Path(path))
            except ImageReadError as error:
                failures.append(error)
        size = model.preprocessing.image_size
        images = np.stack([model.preprocessing.resize(f) for f in films]) if films else np.zeros((0, size, size))
        images = images.astype(np.float32)
        fields = segment_lungs(images) if lungs else None
        maps = {
            method: [
                to_original(m, f.shape, model.preprocessing)
                for m, f in zip(anomaly_maps(model, images, method, batch_size, lungs, fields), films)
            ]
            for method in methods
        }
        yield FilmMaps(kept, films, maps, images, fields, failures)


@dataclass
class MapReport:
    """What :func:`write_maps` wrote: per film (source, map ``.npy``, overlay ``.png``), the films
    whose lung mask was not trusted (their maps kept whole) with the reason, and failures."""

    written: list[tuple[Path, Path, Path]] = field(default_factory=list)
    untrusted_lungs: list[tuple[Path, str]] = field(default_factory=list)
    failures: list[ImageReadError] = field(default_factory=list)


def write_maps(
    model: PromptDetector,
    paths: list[Path],
    out_dir: str | Path,
    method: str = DEFAULT_MAP_METHOD,
    batch_size: int = 16,
    progress: bool = True,
    lungs: bool = True,
) -> MapReport:
    """Write ``<stem>.npy`` (float32 map at the film's resolution) and ``<stem>_overlay.png`` per film;
    with ``lungs`` each map is restricted to the film's lung fields where they are trusted."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in paths]
    stems = unique_stems(paths)
    method = resolve_map_method(model, method)
    report = MapReport()
    for chunk in film_maps(model, paths, (method,), batch_size, progress, lungs):
        report.failures.extend(chunk.failures)
        views = predict_views(model, chunk.images, batch_size)
        scores = model.aggregate(views)
        fields = chunk.lungs or [None] * len(chunk.paths)
        for path, film, amap, view, score, lung in zip(
            chunk.paths, chunk.films, chunk.maps[method], views, scores, fields
        ):
            npy = atomic_write(out_dir / f"{stems[path]}.npy", partial(_save_npy, array=amap))
            meaning = legend_meaning(MAP_METHODS[method].meaning, lung)
            overlay = render_overlay(film, amap, model.view_names, view, float(score), path.name, method, meaning)
            png = atomic_write(out_dir / f"{stems[path]}_overlay.png", partial(overlay.save, format="PNG"))
            report.written.append((path, npy, png))
            if lung is not None and not lung.trusted:
                report.untrusted_lungs.append((path, lung.reason))
    return report


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array.astype(np.float32))
