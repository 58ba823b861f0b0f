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
from ppad.io import atomic_write
from ppad.maps.geometry import to_original
from ppad.maps.lungs import legend_meaning, segment_lungs
from ppad.maps.overlay import render_overlay
from ppad.maps.registry import DEFAULT_MAP_METHOD, MAP_METHODS, anomaly_maps, resolve_map_method
from ppad.methods.base import PromptDetector
from ppad.methods.inference import predict_views
from ppad.outputs import OutputFolder
from ppad.scoring.rows import LUNG_COLUMN, WHOLE_MAP, lung_field_status

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


MAP_FILES = {"map": ".npy", "overlay": "_overlay.png"}  # per film: kind of output → file-name ending
INDEX_COLUMNS = ["path", "score", "map_method", LUNG_COLUMN, "error"]


@dataclass
class MapReport:
    """What :func:`write_maps` wrote: per film (source, map ``.npy``, overlay ``.png``), the films
    whose lung mask was not trusted (their maps kept whole) with the reason, failures, and the
    folder's index CSV (every film's files, this call's and earlier calls')."""

    written: list[tuple[Path, Path, Path]] = field(default_factory=list)
    untrusted_lungs: list[tuple[Path, str]] = field(default_factory=list)
    failures: list[ImageReadError] = field(default_factory=list)
    index: Path | None = None


def write_maps(
    model: PromptDetector,
    paths: list[Path],
    out_dir: str | Path,
    method: str = DEFAULT_MAP_METHOD,
    batch_size: int = 16,
    progress: bool = True,
    lungs: bool = True,
    producer: str | None = None,
) -> MapReport:
    """Write ``NAME.npy`` (float32 map at the film's resolution) and ``NAME_overlay.png`` per film, NAME
    from the film's whole file name (see :mod:`ppad.outputs`: never another file's name), and the index
    ``maps.csv``; with ``lungs`` each map is restricted to the film's lung fields where they are trusted.
    ``producer`` names the model in the index (default: its class); a film the same producer mapped into
    this folder before keeps its names."""
    paths = [Path(p) for p in paths]
    method = resolve_map_method(model, method)
    producer = f"{producer or type(model).__name__}, map {method}{', lungs' if lungs else ''}"
    folder = OutputFolder(Path(out_dir), "maps.csv", INDEX_COLUMNS, MAP_FILES, producer, "--maps")
    names = folder.assign(paths)
    report = MapReport()
    for chunk in film_maps(model, paths, (method,), batch_size, progress, lungs):
        report.failures.extend(chunk.failures)
        for failure in chunk.failures:
            folder.record(failure.path, {"path": failure.path, "error": failure.problem})
        views = predict_views(model, chunk.images, batch_size)
        scores = model.aggregate(views)
        fields = chunk.lungs or [None] * len(chunk.paths)
        for path, film, amap, view, score, lung in zip(
            chunk.paths, chunk.films, chunk.maps[method], views, scores, fields
        ):
            files = names[path].files
            npy = atomic_write(files["map"], partial(_save_npy, array=amap))
            meaning = legend_meaning(MAP_METHODS[method].meaning, lung)
            overlay = render_overlay(film, amap, model.view_names, view, float(score), str(path), method, meaning)
            png = atomic_write(files["overlay"], partial(overlay.save, format="PNG"))
            report.written.append((path, npy, png))
            trust = "" if lung is None else lung_field_status(lung, WHOLE_MAP)
            row = {"path": path, "score": f"{float(score):.6f}", "map_method": method, LUNG_COLUMN: trust}
            folder.record(path, {**row, "error": ""}, names[path])
            if lung is not None and not lung.trusted:
                report.untrusted_lungs.append((path, lung.reason))
    report.index = folder.write_index()
    return report


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array.astype(np.float32))
