"""Run folders: small prompt checkpoints (safetensors) + a JSON config, never the backbone.

A run folder holds::

    config.json               method, model settings, preprocessing, backbone source + fingerprint
    prompts.safetensors       prompts of the epoch chosen on the validation split
    prompts_last.safetensors  prompts after the last finished epoch
    train_state.pt            optimiser/scheduler/history, for resuming (tensors and plain data only)
    manifest.json             seed, settings, support/validation file lists, versions, timings
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ppad import __version__
from ppad.backbones import load_backbone
from ppad.backbones.protocol import Backbone
from ppad.io import atomic_write, read_json, write_json
from ppad.methods.base import PromptDetector
from ppad.methods.registry import get_method

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
STATE_FILE = "train_state.pt"
PROMPT_FILES = {"best": "prompts.safetensors", "last": "prompts_last.safetensors"}


class BackboneMismatchError(ValueError):
    """Prompts trained on one backbone offered to another."""


def save_prompts(model: PromptDetector, path: str | Path) -> Path:
    state = {name: tensor.to("cpu").contiguous() for name, tensor in model.prompt_state_dict().items()}
    metadata = {"fingerprint": model.backbone.fingerprint, "ppad_version": __version__}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def write_run_config(run_dir: str | Path, model: PromptDetector, method: str) -> Path:
    backbone = model.backbone
    return write_json(
        Path(run_dir) / CONFIG_FILE,
        {
            "method": method,
            "model": model.config.to_dict(),
            "preprocessing": model.preprocessing.to_dict(),
            "backbone": {
                "source": backbone.source,
                "architecture": backbone.architecture.name,
                "fingerprint": backbone.fingerprint,
            },
            "ppad_version": __version__,
        },
    )


def read_run_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a ppad run folder (no {CONFIG_FILE}); train one with `ppad train`")
    return read_json(path)


def check_fingerprint(expected: str, backbone: Backbone, what: str) -> None:
    if backbone.fingerprint != expected:
        raise BackboneMismatchError(
            f"{what} were trained on a backbone with fingerprint {expected[:16]}…, but the backbone "
            f"loaded from {backbone.source} has fingerprint {backbone.fingerprint[:16]}…; "
            "prompts only work with the exact weights they were trained on"
        )


def load_prompts(model: PromptDetector, path: str | Path) -> None:
    """Load prompt tensors into ``model`` after checking they belong to its backbone."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompt checkpoint")
    with safe_open(str(path), framework="pt") as handle:
        fingerprint = (handle.metadata() or {}).get("fingerprint", "")
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    check_fingerprint(fingerprint, model.backbone, f"the prompts in {path}")
    model.load_prompt_state_dict({k: v.to(model.device) for k, v in state.items()})


def load_run(
    run_dir: str | Path,
    backbone: str | Path | Backbone | None = None,
    checkpoint: str = "best",
    device: str | torch.device = "cpu",
) -> PromptDetector:
    """Rebuild a trained model (of the run's method) from a run folder.

    ``backbone`` overrides the recorded weights path (e.g. after moving the file); the weights
    must still hash to the recorded fingerprint.
    """
    if checkpoint not in PROMPT_FILES:
        raise ValueError(f"checkpoint must be one of {sorted(PROMPT_FILES)}")
    config = read_run_config(run_dir)
    recorded = config["backbone"]
    if backbone is None or isinstance(backbone, str | Path):
        backbone = load_backbone(backbone or recorded["source"], recorded["architecture"], device)
    check_fingerprint(recorded["fingerprint"], backbone, f"the prompts in {run_dir}")
    method = get_method(config["method"])
    model = method.build(backbone, method.config_from_dict(config["model"]))
    load_prompts(model, Path(run_dir) / PROMPT_FILES[checkpoint])
    return model.eval()
