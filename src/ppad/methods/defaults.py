"""What ``ppad train``, ``bench`` and ``demo`` run when no ``--method`` is given: the backbone's validated default.

A shipped backbone's JSON record (``backbones/weights/NAME.json``, or the ``backbone.json`` beside a
``ppad pretrain`` output) may name a ``default_detector``: the method and settings that
``benchmarks/select_defaults.py`` chose on validation data (NIH ``train``, ``cxr-pool`` ``val`` and
ZhangLab validation; never a test split). A backbone whose record names none — a user-supplied CLIP
such as CheXzero, ``tiny``, a pre-training output — keeps ``ppad``, the paper's method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppad.backbones.factory import PRETRAINED_FILE, SHIPPED_DIR, shipped_backbones

PAPER_METHOD = "ppad"


@dataclass(frozen=True)
class DefaultDetector:
    """A method name, the settings it is run with, and one line saying why."""

    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def overrides(self) -> dict[str, Any]:
        """The settings as :meth:`~ppad.methods.registry.Method.config` takes them (lists → tuples)."""
        return {k: tuple(v) if isinstance(v, list) else v for k, v in self.settings.items()}

    def describe(self) -> str:
        given = ", ".join(
            f"{k} {','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in self.settings.items()
        )
        return f"{self.method}{f' ({given})' if given else ''}: {self.reason}"


def backbone_record(backbone: str | Path) -> dict:
    """The JSON record of a shipped backbone or of a ``ppad pretrain`` output ({} when there is none)."""
    name = str(backbone)
    if name in shipped_backbones():
        path = SHIPPED_DIR / f"{name}.json"
    else:
        path = Path(backbone).expanduser()
        path = (path / PRETRAINED_FILE if path.is_dir() else path).with_suffix(".json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def default_detector(backbone: str | Path) -> DefaultDetector:
    """The method a run on ``backbone`` uses when none is named."""
    chosen = backbone_record(backbone).get("default_detector")
    if not chosen:
        return DefaultDetector(PAPER_METHOD, {}, f"{backbone} names no validated default, so the paper's method")
    ranks = ", ".join(f"{setting} AUC {auc:.3f}" for setting, auc in chosen.get("auc", {}).items())
    reason = f"{backbone}'s validated default ({chosen.get('chosen_by', 'its record')}: {ranks})"
    return DefaultDetector(chosen["method"], dict(chosen.get("settings", {})), reason)
