"""Films for pre-training: a folder with ``labels.csv`` (NIH ChestX-ray8 layout) or a CSV.

Columns: ``image`` (or ``path``, relative to the CSV) and ``split`` (``train``/``val``/``test``), then
labels, text or both:

* labels: ``labels``, or ``findings`` when every cell of it is a ``|``-separated list of short finding
  names (NIH's ``Effusion|Pneumonia``, ``No Finding``; no sentence punctuation). A name ppad has no
  texts for is an error naming its line.
* text: ``report`` (free text; FINDINGS:/IMPRESSION: headings split it into sections) and the section
  columns ``findings`` (when it is not the label column) and ``impression``.
* optionally ``study`` (films of one study: their positives for ICL) and ``view``.

A row needs labels or text. Films of the ``test`` split are never read: they are the localisation
and evaluation set.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ppad.data.layouts import LayoutError, discover
from ppad.pretraining.reports import SECTION_HEADINGS, report_sections
from ppad.pretraining.texts import parse_findings

LABELS_FILE = "labels.csv"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Film:
    path: Path
    findings: tuple[str, ...] | None  # None: the row carries no labels (text only)
    split: str
    view: str = ""
    source: str = ""  # the table it came from (per-source sampling weights and validation)
    sections: tuple[str, ...] = ()  # the report's sections (empty: the label prompts are its text)
    study: str = ""  # "" = a study of its own


@dataclass
class Table:
    """A table's films and which of its columns gave what (recorded with the backbone)."""

    films: list[Film]
    columns: dict[str, object] = field(default_factory=dict)


LABEL_CELL = re.compile(r"^[A-Za-z0-9_\- ]{1,40}$")  # one finding name: no sentence punctuation


def _labels_column(columns: set[str], rows: list[dict]) -> str | None:
    """``labels`` if present; ``findings`` when every cell reads as finding names; else none."""
    if "labels" in columns:
        return "labels"
    if "findings" in columns and all(
        all(LABEL_CELL.match(name.strip()) for name in (row["findings"] or "").split("|") if name.strip())
        for row in rows
    ):
        return "findings"
    return None


def source_name(data: str | Path) -> str:
    """A table's short name: its folder's name, or a CSV's stem."""
    data = Path(data).expanduser()
    return data.name if data.is_dir() else data.stem


def read_table(data: str | Path) -> Table:
    """The ``train`` and ``val`` films of a table; a bad row is an error naming its line."""
    data = Path(data).expanduser()
    table = data / LABELS_FILE if data.is_dir() else data
    if not table.is_file():
        raise LayoutError(f"{data}: no {LABELS_FILE} (columns image,split and findings and/or report) found")
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        columns, rows = set(reader.fieldnames or ()), list(reader)
    path_column = "image" if "image" in columns else "path"
    labels = _labels_column(columns, rows)
    texts = [name for name in ("report", *SECTION_HEADINGS) if name in columns and name != labels]
    if not {path_column, "split"} <= columns or not (labels or texts):
        raise LayoutError(f"{table}: needs the columns image (or path) and split, and findings and/or report")
    films = []
    for line, row in enumerate(rows, start=2):
        split = (row["split"] or "").strip().lower()
        if split not in (*SPLITS, "test"):
            raise LayoutError(f"{table}:{line}: unknown split {row['split']!r}")
        if split == "test":
            continue
        try:
            findings = parse_findings(row[labels] or "") if labels else None
        except ValueError as error:
            raise LayoutError(f"{table}:{line}: {error}") from None
        sections = tuple(report_sections({name: row[name] or "" for name in texts}))
        if findings is None and not sections:
            raise LayoutError(f"{table}:{line}: neither labels nor report text")
        image = (row[path_column] or "").strip()
        if not image:
            raise LayoutError(f"{table}:{line}: no {path_column}")
        path = table.parent / image
        study = (row.get("study") or "").strip()
        films.append(Film(path, findings, split, row.get("view", "") or "", source_name(data), sections, study))
    used = {"labels": labels, "text": texts, "study": "study" if "study" in columns else None}
    return Table(films, used)


def read_films(data: str | Path) -> list[Film]:
    """The ``train`` and ``val`` films of a table (see :func:`read_table`)."""
    return read_table(data).films


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
        labels = "|".join(film.findings) if film.findings is not None else "<unlabelled>"
        digest.update(f"{film.path.name}|{labels}|{film.split}|".encode())
        if film.sections or film.study:
            digest.update(f"{film.study}|{'|'.join(film.sections)}|".encode())
        digest.update(hashlib.sha256(film.path.read_bytes()).digest() if film.path.is_file() else b"missing")
    return digest.hexdigest()
