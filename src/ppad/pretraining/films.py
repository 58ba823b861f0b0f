"""Labelled films for pre-training: a folder with ``labels.csv`` (NIH ChestX-ray8 layout) or a CSV.

Columns: ``image`` (or ``path``, relative to the CSV), ``findings`` (``|``-separated NIH labels or
``No Finding``), ``split`` (``train``/``val``/``test``), optionally ``view``. Films of the ``test``
split are never read: they are the localisation and evaluation set.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ppad.data.layouts import LayoutError, discover
from ppad.pretraining.texts import parse_findings

LABELS_FILE = "labels.csv"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Film:
    path: Path
    findings: tuple[str, ...]
    split: str
    view: str = ""
    source: str = ""  # the table it came from (per-source sampling weights and validation)


def source_name(data: str | Path) -> str:
    """A table's short name: its folder's name, or a CSV's stem."""
    data = Path(data).expanduser()
    return data.name if data.is_dir() else data.stem


def read_films(data: str | Path) -> list[Film]:
    """The ``train`` and ``val`` films of a labelled table; a bad row is an error naming its line."""
    data = Path(data).expanduser()
    table = data / LABELS_FILE if data.is_dir() else data
    if not table.is_file():
        raise LayoutError(f"{data}: no {LABELS_FILE} (columns image,findings,split[,view]) found")
    films = []
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        path_column = "image" if "image" in columns else "path"
        if not {path_column, "findings", "split"} <= columns:
            raise LayoutError(f"{table}: needs the columns image (or path), findings and split")
        for line, row in enumerate(reader, start=2):
            split = row["split"].strip().lower()
            if split not in (*SPLITS, "test"):
                raise LayoutError(f"{table}:{line}: unknown split {row['split']!r}")
            if split == "test":
                continue
            try:
                findings = parse_findings(row["findings"])
            except ValueError as error:
                raise LayoutError(f"{table}:{line}: {error}") from None
            path = table.parent / row[path_column].strip()
            films.append(Film(path, findings, split, row.get("view", "") or "", source_name(data)))
    return films


def normal_films(data: str | Path) -> list[Film]:
    """A detection data set's training normals as ``No Finding`` training films (abnormal films and
    a split layout's ``test/`` folder are never read)."""
    normals = discover(data).train_normals
    if not normals:
        raise LayoutError(f"{data}: no training normals found to add to pre-training")
    return [Film(Path(path), (), "train", source=source_name(data)) for path in normals]


def films_digest(films: list[Film]) -> str:
    """SHA-256 over every film's relative name, labels, split and file bytes: what the model saw."""
    digest = hashlib.sha256()
    for film in sorted(films, key=lambda f: str(f.path)):
        digest.update(f"{film.path.name}|{'|'.join(film.findings)}|{film.split}|".encode())
        digest.update(hashlib.sha256(film.path.read_bytes()).digest() if film.path.is_file() else b"missing")
    return digest.hexdigest()
