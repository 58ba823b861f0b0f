"""Safe, strict loading of CLIP weights.

Accepted files, detected by content rather than by name:

* an OpenAI/CheXzero state dict saved with ``torch.save`` (``.pt``/``.pth``), optionally wrapped
  in ``{"state_dict": ...}`` or ``{"model": ...}`` and/or prefixed with ``module.``;
* an open_clip training checkpoint (the same wrapping);
* an OpenAI TorchScript archive (``ViT-B-32.pt`` as published by OpenAI);
* a safetensors file.

Pickles are read with ``weights_only=True``: no code in a checkpoint is ever executed. A file
that cannot be read is named with what is wrong with it (not a weights file, truncated or
corrupt, pickled objects other than tensors), never with the reader's own advice.
"""

from __future__ import annotations

import re
import warnings
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
BACKBONE_FILE_KINDS = (
    "a CLIP state dict .pt (as CheXzero ships), an OpenAI JIT archive, an open_clip checkpoint, "
    "a .safetensors file, or a `ppad pretrain` folder"
)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format and TorchScript archives
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before 1.6


class CheckpointError(FileProblem):
    """A weights file that cannot be used; the message names the file and the problem."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat ``name → tensor`` dict in OpenAI CLIP key format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        with warnings.catch_warnings():  # torch's deprecation and pickle-protocol notes never reach the user
            warnings.simplefilter("ignore")
            if _is_safetensors(path, _head(path)):
                raw = load_safetensors(str(path))
            elif _is_torchscript(path):
                raw = torch.jit.load(str(path), map_location="cpu").state_dict()
            else:
                raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every reader failure becomes a named error
        raise unreadable_checkpoint(path, error) from error
    return _flatten(raw, path)


def unreadable_checkpoint(path: Path, error: Exception) -> CheckpointError:
    """What is wrong with a weights file a reader refused, judged from the file's first bytes and the error.

    The reader's message is cut to its diagnosis: PyTorch's advice to retry with
    ``weights_only=False`` (which would run code from the file) never reaches the user."""
    if isinstance(error, OSError):  # permissions, a vanished file: the system's words are the diagnosis
        return CheckpointError(path, f"cannot be read ({error.strerror or error})")
    head = _head(path)
    if not head:
        return CheckpointError(path, "is empty (0 bytes)")
    disallowed = re.search(r"GLOBAL ([\w.]+)", str(error))
    if disallowed:
        return CheckpointError(
            path,
            f"holds pickled Python objects ({disallowed[1]}), not only tensors: ppad never runs code from a "
            "weights file; save the model's state_dict() instead",
        )
    if _is_safetensors(path, head) or head.startswith(LEGACY_TORCH_MAGIC) or _is_torch_zip(path, head):
        return CheckpointError(path, f"is truncated or corrupt ({_diagnosis(error)})")
    return CheckpointError(path, f"is not a backbone weights file; expected {BACKBONE_FILE_KINDS}")


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(len(LEGACY_TORCH_MAGIC))


def _is_safetensors(path: Path, head: bytes) -> bool:
    """By suffix, or by content: the JSON header's length (8 bytes, little-endian), then ``{``."""
    return path.suffix in SAFETENSORS_SUFFIXES or head[8:9] == b"{"


def _is_torch_zip(path: Path, head: bytes) -> bool:
    """A zip archive as torch.save and TorchScript write it (a ``data.pkl`` inside), or a cut one."""
    if not head.startswith(ZIP_MAGIC):
        return False
    if not zipfile.is_zipfile(path):
        return True  # its central directory is missing: truncated
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("data.pkl") for name in archive.namelist())


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def _diagnosis(error: Exception) -> str:
    """The reader's diagnosis without its advice: ``WeightsUnpickler error: X`` → X, else the first sentence."""
    text = str(error)
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if unpickler:
        text = unpickler[1]
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text.strip())
    return re.split(r"\.\s|\n", text, maxsplit=1)[0].rstrip(".") or type(error).__name__


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
