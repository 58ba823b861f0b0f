"""``--device`` names to torch devices, checked against this machine before any work starts."""

from __future__ import annotations

import torch

from ppad.errors import DeviceError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; anything this
    machine lacks is a :class:`DeviceError` saying what it has."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"--device {device!r} is not a device name (use auto, cpu, cuda, cuda:N or mps)") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {device}: this machine has no usable CUDA GPU (use --device cpu)")
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(f"--device {device}: this machine has {count} CUDA GPU(s), numbered from 0")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {device}: MPS is not available on this machine")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {device}: ppad runs on cpu, cuda or mps")
    return resolved
