"""Data-set layouts, discovered from what is on disk.

* Split folders — ``train/<normal>`` and ``test/<normal>``, ``test/<abnormal>``. This covers the
  SQUID/PPAD ZhangLab layout (``train/normal_256``, ``test/normal_256``, ``test/pneumonia_256``)
  and the generic ``train/normal``, ``test/normal``, ``test/abnormal``.
* Flat folders — ``normal/`` and ``abnormal/`` (or ``pneumonia/``) with no split: the normal
  images are both the few-shot pool and part of the test set; evaluation drops every file a
  run trained or validated on.
* CSV manifest — ``path,label[,split]`` with label ``normal``/``0`` or ``abnormal``/``pneumonia``/``1``
  and split ``train``/``test`` (absent = both); paths are relative to the CSV's folder.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ppad.data.readers import SUPPORTED_SUFFIXES, is_dicom
from ppad.errors import DataError

NORMAL, ABNORMAL = 0, 1
CLASS_FOLDERS = {
    "normal": NORMAL,
    "normal_256": NORMAL,
    "abnormal": ABNORMAL,
    "abnormal_256": ABNORMAL,
    "pneumonia": ABNORMAL,
    "pneumonia_256": ABNORMAL,
}
LABEL_WORDS = {"0": NORMAL, "normal": NORMAL, "1": ABNORMAL, "abnormal": ABNORMAL, "pneumonia": ABNORMAL}
SPLIT_WORDS = ("", "train", "test")  # a manifest's split column; empty = both


class LayoutError(DataError):
    """A data path that does not follow any supported layout; the message says what was expected."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int


@dataclass
class DatasetIndex:
    """The files of a data set: the normal pool for few-shot training and the labelled test set."""

    root: Path
    layout: str
    train_normals: list[Path] = field(default_factory=list)
    test: list[LabelledImage] = field(default_factory=list)

    def summary(self) -> dict:
        abnormal = sum(item.label for item in self.test)
        return {
            "root": str(self.root),
            "layout": self.layout,
            "train_normals": len(self.train_normals),
            "test_normal": len(self.test) - abnormal,
            "test_abnormal": abnormal,
        }

    def subset(self, train_normals: int, test_per_class: int) -> DatasetIndex:
        """The first ``train_normals`` training normals and the first test films of each class."""
        test = [
            item
            for label in (NORMAL, ABNORMAL)
            for item in [item for item in self.test if item.label == label][:test_per_class]
        ]
        return DatasetIndex(self.root, self.layout, self.train_normals[:train_normals], test)


def list_images(folder: Path) -> list[Path]:
    """Supported image files below ``folder`` (recursive, hidden files skipped), sorted; suffix-less
    files are included when they carry the DICOM magic (archives often store DICOM that way)."""
    return sorted(
        path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".") and _is_image_file(path)
    )


def _is_image_file(path: Path) -> bool:
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return True
    try:
        return not path.suffix and is_dicom(path)
    except OSError:
        return False


def _class_folders(folder: Path) -> list[LabelledImage]:
    items = []
    for child in sorted(folder.iterdir()) if folder.is_dir() else []:
        label = CLASS_FOLDERS.get(child.name.lower())
        if child.is_dir() and label is not None:
            items.extend(LabelledImage(path, label) for path in list_images(child))
    return items


def discover(path: str | Path) -> DatasetIndex:
    """Index a data set folder or CSV manifest."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_manifest(path)
    if not path.is_dir():
        raise LayoutError(f"{path}: no such folder or CSV manifest")
    if (path / "train").is_dir() or (path / "test").is_dir():
        train = _class_folders(path / "train")
        index = DatasetIndex(
            root=path,
            layout="split-folders",
            train_normals=[item.path for item in train if item.label == NORMAL],
            test=_class_folders(path / "test"),
        )
    else:
        items = _class_folders(path)
        index = DatasetIndex(
            root=path,
            layout="flat-folders",
            train_normals=[item.path for item in items if item.label == NORMAL],
            test=items,
        )
    if not index.train_normals and not index.test:
        names = ", ".join(sorted(CLASS_FOLDERS))
        raise LayoutError(
            f"{path}: found no images; expected class folders named one of {names}, "
            "either directly or under train/ and test/, or a CSV manifest (path,label[,split])"
        )
    return index


def write_manifest(index: DatasetIndex, path: Path) -> Path:
    """Write ``index`` as a ``path,label,split`` CSV manifest (absolute paths) that reads back equal."""
    rows = [f"{file.absolute()},normal,train\n" for file in index.train_normals]
    rows += [f"{item.path.absolute()},{item.label},test\n" for item in index.test]
    path.write_text("path,label,split\n" + "".join(rows))
    return path


def read_manifest(path: Path) -> DatasetIndex:
    """Index a ``path,label[,split]`` CSV manifest; a malformed row is an error naming its line."""
    index = DatasetIndex(root=path.parent, layout="csv")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise LayoutError(f"{path}: a manifest needs a header with 'path' and 'label' columns")
        for row in reader:
            label = LABEL_WORDS.get(str(row["label"]).strip().lower())
            split = str(row.get("split") or "").strip().lower()
            if label is None:
                allowed = ", ".join(sorted(LABEL_WORDS))
                raise LayoutError(f"{path}:{reader.line_num}: bad label {row['label']!r}; allowed: {allowed}")
            if split not in SPLIT_WORDS:
                allowed = f"{', '.join(SPLIT_WORDS[1:])} or empty (both)"
                raise LayoutError(f"{path}:{reader.line_num}: bad split {row['split']!r}; allowed: {allowed}")
            file = (path.parent / row["path"].strip()).resolve()
            if split in ("", "train") and label == NORMAL:
                index.train_normals.append(file)
            if split in ("", "test"):
                index.test.append(LabelledImage(file, label))
    return index
