"""Per-film output files (lung masks, anomaly maps, overlays): one naming rule, and an index that records them.

A film's files are named from its whole file name, only a known image suffix dropped (``a.b.c.jpg`` →
``a.b.c``), plus each kind's ending (``.npy``, ``_overlay.png``). A name that any other file holds — another
film's output of this call, or anything already in the folder — is never taken: the film gets ``-2``, ``-3``…
(the first free one, in input order; names compared without case, as on macOS and Windows). The folder's index
CSV has one row per film and producer (the run or segmenter that wrote it) naming its files, so a later call
extends the folder: a film the same producer already wrote there keeps its names and its files are rewritten;
no other file is ever replaced.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ppad.errors import FileProblem
from ppad.io import write_csv

FILM_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"})
KEY_COLUMNS = ("film", "producer")  # a row's identity in the index: the film's absolute path and what wrote it


def film_base(path: Path) -> str:
    """A film's whole file name without its image suffix (``x.1.jpg`` → ``x.1``; ``IM.1.2`` stays ``IM.1.2``)."""
    name = Path(path).name
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in FILM_SUFFIXES and len(name) > len(suffix) else name


def film_key(path: Path) -> str:
    """What identifies a film across calls: its absolute path, symbolic links resolved."""
    return str(Path(path).resolve())


def writable_folder(folder: Path, option: str, create: bool = False) -> Path:
    """Prove before any work that ``folder`` can be written (a file made and removed in it, or in its
    nearest existing parent when it does not exist yet; ``create`` makes it); otherwise a one-line
    :class:`FileProblem` naming the option."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FileProblem(existing, f"is a file, not a folder; {option} needs a folder there")
    try:
        probe = existing / f".ppad-write-check-{os.getpid()}"
        probe.touch()
        probe.unlink()
        if create:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FileProblem(folder, f"cannot be written ({error.strerror or error}); choose another {option}") from None
    return folder


def writable_file(path: Path, option: str) -> Path:
    """``path`` can be created or replaced: not a folder, and its folder writable (see :func:`writable_folder`)."""
    path = Path(path)
    if path.is_dir():
        raise FileProblem(path, f"is a folder; {option} takes a file path")
    writable_folder(path.parent, option)
    return path


@dataclass(frozen=True)
class FilmFiles:
    """One film's output files in the folder: ``files[kind]`` for each kind of output."""

    film: Path
    files: dict[str, Path]


class OutputFolder:
    """A folder of per-film outputs with its index CSV (``index``, columns: ``columns``, then one per kind of
    output naming its file, then ``film`` and ``producer``); ``endings`` maps each kind to its file-name ending;
    ``producer`` says what writes this call's files; ``option`` is the command-line option that named the folder."""

    def __init__(
        self, folder: Path, index: str, columns: list[str], endings: dict[str, str], producer: str, option: str
    ) -> None:
        self.folder, self.endings, self.producer = writable_folder(folder, option, create=True), endings, producer
        self.index = self.folder / index
        self.rows: dict[tuple[str, str], dict[str, str]] = {}
        self.columns: list[str] = [*columns, *endings, *KEY_COLUMNS]
        if self.index.is_file():
            self._read_index()
        self._taken = {name.casefold() for name in os.listdir(self.folder)} | {index.casefold()}
        for row in self.rows.values():
            self._taken.update(row[kind].casefold() for kind in endings if row.get(kind))

    def _read_index(self) -> None:
        with open(self.index, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in (*KEY_COLUMNS, *self.endings) if c not in (reader.fieldnames or [])]
            if missing:
                raise FileProblem(
                    self.index, f"is not a ppad index of this folder's files (no {', '.join(missing)} column)"
                )
            self.columns = [*reader.fieldnames, *(c for c in self.columns if c not in reader.fieldnames)]
            for row in reader:
                self.rows[(row["film"], row["producer"])] = row

    def assign(self, paths: list[Path]) -> dict[Path, FilmFiles]:
        """Each film's output files: the names this producer gave it earlier, else the first free names."""
        assigned = {}
        for path in paths:
            earlier = self.rows.get((film_key(path), self.producer), {})
            if all(earlier.get(kind) for kind in self.endings):
                names = {kind: earlier[kind] for kind in self.endings}
            else:
                names = self._free_names(film_base(path))
                self._taken.update(name.casefold() for name in names.values())
            assigned[path] = FilmFiles(path, {kind: self.folder / name for kind, name in names.items()})
        return assigned

    def _free_names(self, base: str) -> dict[str, str]:
        n, stem = 1, base
        while any(f"{stem}{ending}".casefold() in self._taken for ending in self.endings.values()):
            n += 1
            stem = f"{base}-{n}"
        return {kind: f"{stem}{ending}" for kind, ending in self.endings.items()}

    def record(self, path: Path, values: dict[str, object], files: FilmFiles | None = None) -> None:
        """The index row of ``path`` (replacing this producer's earlier row of the same film): its ``values``
        and, when it has them, the names of its files."""
        row = {"film": film_key(path), "producer": self.producer, **{k: str(v) for k, v in values.items()}}
        if files is not None:
            row.update({kind: file.name for kind, file in files.files.items()})
        self.columns += [column for column in row if column not in self.columns]
        self.rows[(row["film"], row["producer"])] = row

    def write_index(self) -> Path:
        """The index CSV: earlier calls' rows first, in their order, then this call's new films."""
        return write_csv(self.index, self.rows.values(), self.columns)
