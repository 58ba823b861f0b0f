"""Typed records of a run folder's JSON files, validated on read with errors that name the file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ppad import __version__
from ppad.errors import FileProblem

RUN_FORMAT = "ppad-run"
RUN_FORMAT_VERSION = 1  # bump when a file's layout changes; readers refuse newer versions


class RunFolderError(FileProblem):
    """A run-folder file that is missing, corrupt, from a newer ppad or for another model."""


class BackboneMismatchError(RunFolderError):
    """Prompts trained on one backbone offered to another."""


class RunConflictError(RunFolderError):
    """An output folder that already holds a different run."""


def as_stored(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value, default=str))


def _require(path: Path, data: Any, kinds: dict[str, type | tuple[type, ...]]) -> None:
    if not isinstance(data, dict):
        raise RunFolderError(path, f"expected a JSON object, found {type(data).__name__}")
    for key, kind in kinds.items():
        if key not in data:
            raise RunFolderError(path, f"missing the field {key!r}")
        if not isinstance(data[key], kind) or isinstance(data[key], bool) and kind is int:
            raise RunFolderError(path, f"field {key!r} should be {getattr(kind, '__name__', kind)}")


@dataclass(frozen=True)
class BackboneRecord:
    source: str
    architecture: str
    fingerprint: str


@dataclass(frozen=True)
class RunConfig:
    """``config.json``: what rebuilds the model — method, its settings, preprocessing, backbone."""

    method: str
    model: dict[str, Any]
    preprocessing: dict[str, Any]
    backbone: BackboneRecord
    ppad_version: str = __version__
    format_version: int = RUN_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> RunConfig:
        _require(path, data, {"method": str, "model": dict, "preprocessing": dict, "backbone": dict})
        check_version(data, path)
        backbone = data["backbone"]
        _require(path, backbone, {"source": str, "architecture": str, "fingerprint": str})
        return cls(
            method=data["method"],
            model=data["model"],
            preprocessing=data["preprocessing"],
            backbone=BackboneRecord(backbone["source"], backbone["architecture"], backbone["fingerprint"]),
            ppad_version=str(data.get("ppad_version", "")),
            format_version=int(data.get("format_version", RUN_FORMAT_VERSION)),
        )


def check_version(data: dict, path: Path) -> None:
    """Files without a version predate versioning and share version 1's layout."""
    version = data.get("format_version", RUN_FORMAT_VERSION)
    if not isinstance(version, int) or version < 1:
        raise RunFolderError(path, f"bad format_version {version!r}")
    if version > RUN_FORMAT_VERSION:
        raise RunFolderError(
            path, f"written by a newer ppad (run format {version}; this ppad reads up to {RUN_FORMAT_VERSION})"
        )


@dataclass(frozen=True)
class RunIdentity:
    """What makes two runs the same run: compared before a run is resumed or reused."""

    method: str
    settings: dict[str, Any]
    model: dict[str, Any]
    backbone_fingerprint: str
    split: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return as_stored(asdict(self))

    def differences(self, other: RunIdentity, defaults: dict[str, dict[str, Any]] | None = None) -> list[str]:
        """Names of the fields (or settings) that differ, e.g. ``['settings.epochs']``. A setting
        missing from ``other`` (written before it existed) counts as its value in ``defaults``."""
        mine, theirs = self.to_dict(), other.to_dict()
        defaults = as_stored(defaults or {})
        changed = []
        for key in mine:
            if isinstance(mine[key], dict) and isinstance(theirs[key], dict) and key != "split":
                stored = {**defaults.get(key, {}), **theirs[key]}
                changed.extend(
                    f"{key}.{k}" for k in sorted(mine[key].keys() | stored.keys()) if mine[key].get(k) != stored.get(k)
                )
            elif mine[key] != theirs[key]:
                changed.append(key)
        return changed


@dataclass
class RunManifest:
    """``manifest.json``: the run's identity plus its record (command, data, versions, result)."""

    identity: RunIdentity
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.identity.settings["seed"])

    @property
    def result(self) -> dict[str, Any] | None:
        """The training result (history, best epoch, validation AUC) once the run finished."""
        result = self.record.get("result")
        return result if isinstance(result, dict) and "finished" in self.record else None

    def seen_files(self) -> set[Path]:
        """Every file the run used for its support set or validation (resolved)."""
        return {Path(p).resolve() for files in self.identity.split.values() for p in files}

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity.to_dict(), "format_version": RUN_FORMAT_VERSION, **self.record}

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> RunManifest:
        kinds = {"method": str, "settings": dict, "model": dict, "backbone_fingerprint": str, "split": dict}
        _require(path, data, kinds)
        check_version(data, path)
        _require(path, data["settings"], {"seed": int})
        for name, files in data["split"].items():
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise RunFolderError(path, f"split {name!r} should be a list of file paths")
        identity = RunIdentity(**{key: data[key] for key in kinds})
        record = {key: value for key, value in data.items() if key not in kinds and key != "format_version"}
        return cls(identity, record)


METRICS_FILE = "metrics.json"
METRIC_NAMES = ("acc", "auc", "f1", "ap")


def validate_metrics(data: Any, path: Path) -> dict[str, Any]:
    """An evaluation's ``metrics.json``: its ``metrics`` must hold every headline number."""
    _require(path, data, {"metrics": dict})
    for name in METRIC_NAMES:
        if not isinstance(data["metrics"].get(name), int | float):
            raise RunFolderError(path, f"metrics lack a number for {name!r}")
    return data
