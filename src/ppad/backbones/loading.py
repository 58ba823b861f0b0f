"""Safe, strict loading of CLIP weights.

Accepted files, detected by content rather than by name:

* an OpenAI/CheXzero state dict saved with ``torch.save`` (``.pt``/``.pth``), optionally wrapped
  in ``{"state_dict": ...}`` or ``{"model": ...}`` and/or prefixed with ``module.``;
* an open_clip training checkpoint (the same wrapping);
* an OpenAI TorchScript archive (``ViT-B-32.pt`` as published by OpenAI);
* a safetensors file.

Pickles are read with ``weights_only=True``: no code in a checkpoint is ever executed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors

from ppad.backbones.architectures import ARCHITECTURES, Architecture
from ppad.errors import FileProblem

# Entries that are not weights: metadata in OpenAI's TorchScript archives, and the text causal
# mask that traced/scripted exports include although it is derived from the context length.
NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
SAFETENSORS_SUFFIXES = (".safetensors",)


class CheckpointError(FileProblem):
    """A weights file that cannot be used; the message names the file and the problem."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat ``name → tensor`` dict in OpenAI CLIP key format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        if path.suffix in SAFETENSORS_SUFFIXES:
            raw = load_safetensors(str(path))
        elif _is_torchscript(path):
            raw = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - every reader failure becomes a named error
        raise CheckpointError(path, f"cannot be read as a checkpoint ({type(error).__name__}: {error})") from error
    return _flatten(raw, path)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def _flatten(raw: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(raw, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(raw.get(wrapper), dict):
                raw = raw[wrapper]
                break
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(path, "does not contain a state dict (a mapping of parameter names to tensors)")
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(path, f"entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key.removeprefix("module.")
        if name not in NON_WEIGHT_KEYS:
            state[name] = value
    return state


def shape_signature(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def _expected_signature(architecture: Architecture) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return shape_signature(architecture.build().state_dict())


def describe_mismatch(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], limit: int = 8) -> str:
    """A readable list of missing, unexpected and mis-shaped keys."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected)):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{label}: {', '.join(keys[:limit])}{more}")
    if reshaped:
        shown = ", ".join(f"{k} {found[k]} vs expected {expected[k]}" for k in reshaped[:limit])
        parts.append(f"shape mismatches: {shown}")
    return "; ".join(parts)


def match_architecture(state: dict[str, torch.Tensor], path: str | Path, name: str | None = None) -> Architecture:
    """The registered architecture whose keys and shapes equal the state dict's exactly.

    With ``name`` given, only that architecture is tried and any difference is an error that
    names the missing/unexpected keys.
    """
    found = shape_signature(state)
    candidates = [ARCHITECTURES[name]] if name else list(ARCHITECTURES.values())
    mismatches = []
    for architecture in candidates:
        difference = describe_mismatch(_expected_signature(architecture), found)
        if not difference:
            return architecture
        mismatches.append((architecture.name, difference))
    label, difference = min(mismatches, key=lambda item: len(item[1]))
    raise CheckpointError(path, f"does not match the {label} architecture strictly: {difference}")


def load_clip_weights(path: str | Path, architecture: str | None = None, dtype: torch.dtype = torch.float32):
    """Build the matching CLIP module and load ``path`` into it strictly.

    Returns ``(clip_module, architecture)``; the module is in ``dtype`` (fp32 by default).
    """
    state = read_state_dict(path)
    arch = match_architecture(state, path, architecture)
    clip = arch.build()
    clip.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    return clip.to(dtype), arch
