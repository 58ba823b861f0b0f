"""Real abnormal validation films (``ppad train --val-abnormal``): found in a folder or a CSV
manifest, and refused when any of them is also a film the run tests on, trains on or holds out
as a normal — by resolved path, or by content (a copy under another name)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ppad.data.fewshot import FewShotSplit
from ppad.data.layouts import ABNORMAL, CLASS_FOLDERS, NORMAL, DatasetIndex, LayoutError, list_images, read_manifest
from ppad.errors import DataError, SettingsError


class ValidationOverlapError(DataError):
    """A real abnormal validation film that is also in the test split, the support or the held-out normals."""


@dataclass(frozen=True)
class RealAbnormalFilms:
    """The films ``--val-abnormal`` names (resolved, sorted) and each one's SHA-256 (None: unreadable)."""

    source: Path
    sha256: dict[Path, str | None]

    @property
    def files(self) -> list[Path]:
        return list(self.sha256)

    def record(self, read: list[Path]) -> dict:
        """The manifest's note of the films that were read: how many, from where, their sorted hashes."""
        return {"count": len(read), "source": str(self.source), "sha256": sorted(self.sha256[p] for p in read)}


def file_sha256(path: Path) -> str | None:
    """The file's SHA-256, or None when it cannot be read (it is then reported as unreadable later)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def find_real_abnormal(path: str | Path) -> RealAbnormalFilms:
    """The abnormal films of a folder (every image below it) or of a ``path,label[,split]`` CSV
    manifest (its abnormal rows). Refused: no films, a CSV listing normal films, a folder holding a
    normal class folder (``normal/``, ``normal_256/``)."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        index = read_manifest(path)
        if index.train_normals or any(item.label == NORMAL for item in index.test):
            raise LayoutError(f"{path}: lists normal films; --val-abnormal takes abnormal films only")
        files = [item.path for item in index.test if item.label == ABNORMAL]
    elif path.is_dir():
        files = list_images(path)
        normal_folders = {name for name, label in CLASS_FOLDERS.items() if label == NORMAL}
        for file in files:
            if normal_folders & {part.lower() for part in file.relative_to(path).parts[:-1]}:
                raise LayoutError(f"{file}: a normal class folder inside --val-abnormal; give the abnormal films only")
    else:
        raise LayoutError(f"{path}: no such folder or CSV manifest (--val-abnormal)")
    if not files:
        raise DataError(f"--val-abnormal {path}: no abnormal films found (a folder of images or a path,label CSV)")
    return RealAbnormalFilms(path, {file: file_sha256(file) for file in sorted({f.resolve() for f in files})})


def refuse_overlaps(films: RealAbnormalFilms, elsewhere: dict[str, list[Path]]) -> None:
    """Raise :class:`ValidationOverlapError` for the first film that is also in one of ``elsewhere``'s
    lists (``"in the test split of --data"`` → its files): the same resolved path or the same
    content. Only files of a size some film has are hashed."""
    by_hash = {digest: film for film, digest in films.sha256.items() if digest is not None}
    sizes = {film.stat().st_size for film in films.files if film.is_file()}
    for where, files in elsewhere.items():
        for other in files:
            resolved = other.resolve()
            if resolved in films.sha256:
                raise ValidationOverlapError(f"--val-abnormal film {resolved} is also {where}; remove it")
            if resolved.is_file() and resolved.stat().st_size in sizes:
                film = by_hash.get(file_sha256(resolved))
                if film is not None:
                    raise ValidationOverlapError(
                        f"--val-abnormal film {film} is also {where} (same content as {resolved}); remove it"
                    )


def checked_real_abnormal(path: str | Path, index: DatasetIndex, split: FewShotSplit) -> RealAbnormalFilms:
    """``--val-abnormal``'s films (:func:`find_real_abnormal`) once none is in ``index``'s test split,
    the support or the held-out normals of ``split`` (:func:`refuse_overlaps`); cheap, so it runs
    before any model loads."""
    if not split.validation:
        raise SettingsError("--val-abnormal needs held-out normals to set the films against: --val-size is 0")
    films = find_real_abnormal(path)
    elsewhere = {
        "in the test split of --data": [item.path for item in index.test],
        "in the support set": split.support,
        "among the held-out validation normals": split.validation,
    }
    refuse_overlaps(films, elsewhere)
    return films
