"""One factory for every backbone: a weights path, or ``tiny`` for the embedded default."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ppad.backbones.architectures import get_architecture
from ppad.backbones.backbone import ClipBackbone
from ppad.backbones.loading import load_clip_weights
from ppad.io import atomic_write

TINY = "tiny"
TINY_SEED = 0


def cache_dir() -> Path:
    """Where generated weights are cached: ``$PPAD_CACHE`` or ``~/.cache/ppad``."""
    return Path(os.environ.get("PPAD_CACHE", Path.home() / ".cache" / "ppad"))


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


def load_backbone(
    spec: str | Path, architecture: str | None = None, device: str | torch.device = "cpu"
) -> ClipBackbone:
    """Load a frozen CLIP from a weights file, or ``"tiny"`` for the random test/demo model.

    ``architecture`` names a registered layout (e.g. ``"ViT-B/32"``); by default the layout is
    recognised from the checkpoint's keys and shapes. Either way loading is strict.
    The tiny model goes through the very same file → strict-load path as real weights.
    """
    is_tiny = str(spec) == TINY
    path = tiny_weights_path() if is_tiny else Path(spec).expanduser()
    clip, arch = load_clip_weights(path, TINY if is_tiny else architecture)
    return ClipBackbone(clip, arch, source=TINY if is_tiny else str(path.resolve())).to(device)
