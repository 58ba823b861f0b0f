"""The run folder: one type owns its files, reads them back validated, and rebuilds the model.

A run folder holds::

    config.json               method, model settings, preprocessing, backbone source + fingerprint
    manifest.json             identity (method, settings, model, backbone, split) + record
    prompts.safetensors       prompts of the epoch chosen on the validation split
    prompts_last.safetensors  prompts after the last finished epoch
    train_state.pt            optimiser/scheduler/history, for resuming (tensors and plain data only)
    evaluation/               metrics.json, scores.csv, scores.json of `ppad evaluate`

Every file is written atomically; every read failure is a :class:`RunFolderError` naming the file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ppad import __version__
from ppad.backbones import load_backbone
from ppad.backbones.protocol import Backbone
from ppad.errors import SettingsError
from ppad.io import atomic_write, write_json
from ppad.methods.base import PromptDetector
from ppad.methods.registry import get_method
from ppad.runs.records import (
    METRICS_FILE,
    BackboneMismatchError,
    BackboneRecord,
    RunConfig,
    RunConflictError,
    RunFolderError,
    RunIdentity,
    RunManifest,
    validate_metrics,
)

log = logging.getLogger("ppad")

PROMPT_FILES = {"best": "prompts.safetensors", "last": "prompts_last.safetensors"}
STATE_KEYS = ("prompts", "optimizer", "scheduler", "epoch", "history", "best")


@dataclass
class TrainState:
    """What resumes training: learned tensors, optimiser and scheduler state, history, best epoch."""

    prompts: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    epoch: int
    history: list[dict]
    best: dict[str, Any]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunFolderError(path, "missing")
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise RunFolderError(path, f"is not valid JSON ({error})") from None


def check_fingerprint(expected: str, backbone: Backbone, what: str) -> None:
    if backbone.fingerprint != expected:
        raise BackboneMismatchError(
            what,
            f"trained on a backbone with fingerprint {expected[:16]}…, but the backbone loaded from "
            f"{backbone.source} has fingerprint {backbone.fingerprint[:16]}…; prompts only work with "
            "the exact weights they were trained on",
        )


class RunFolder:
    """Paths, config, manifest, prompts, training state and evaluations of one run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def state_path(self) -> Path:
        return self.root / "train_state.pt"

    @property
    def evaluation_dir(self) -> Path:
        return self.root / "evaluation"

    def prompts_path(self, kind: str = "best") -> Path:
        if kind not in PROMPT_FILES:
            raise SettingsError(f"--checkpoint must be one of {', '.join(sorted(PROMPT_FILES))}, got {kind!r}")
        return self.root / PROMPT_FILES[kind]

    def metrics_path(self, evaluation_dir: str | Path | None = None) -> Path:
        return Path(evaluation_dir or self.evaluation_dir) / METRICS_FILE

    # config.json -----------------------------------------------------------------------------
    def write_config(self, model: PromptDetector, method: str) -> RunConfig:
        backbone = model.backbone
        config = RunConfig(
            method=method,
            model=model.config.to_dict(),
            preprocessing=model.preprocessing.to_dict(),
            backbone=BackboneRecord(backbone.source, backbone.architecture.name, backbone.fingerprint),
        )
        write_json(self.config_path, config.to_dict())
        return config

    def read_config(self) -> RunConfig:
        if not self.root.is_dir():
            raise RunFolderError(self.root, "no such run folder")
        if not self.config_path.is_file():
            raise RunFolderError(self.root, "not a ppad run folder (no config.json); train one with `ppad train`")
        return RunConfig.from_dict(_read_json(self.config_path), self.config_path)

    # manifest.json ---------------------------------------------------------------------------
    def write_manifest(self, manifest: RunManifest) -> None:
        write_json(self.manifest_path, manifest.to_dict())

    def read_manifest(self) -> RunManifest:
        return RunManifest.from_dict(_read_json(self.manifest_path), self.manifest_path)

    def previous_manifest(
        self, identity: RunIdentity, defaults: dict[str, dict[str, Any]] | None = None
    ) -> RunManifest | None:
        """The manifest already here (``None`` if none); a different run here is an error. Settings
        an older ppad did not record count as their ``defaults`` (``{"settings": …, "model": …}``)."""
        if not self.manifest_path.is_file():
            return None
        previous = self.read_manifest()
        changed = identity.differences(previous.identity, defaults)
        if changed:
            raise RunConflictError(
                self.root,
                f"already holds a run with different {', '.join(changed)}; choose a new --out folder "
                "(a run is resumed or reused only with identical settings)",
            )
        return previous

    # prompts*.safetensors --------------------------------------------------------------------
    def save_prompts(self, model: PromptDetector, kind: str) -> Path:
        state = {name: tensor.to("cpu").contiguous() for name, tensor in model.prompt_state_dict().items()}
        metadata = {"fingerprint": model.backbone.fingerprint, "ppad_version": __version__}
        return atomic_write(self.prompts_path(kind), lambda tmp: save_file(state, str(tmp), metadata=metadata))

    def load_prompts(self, model: PromptDetector, kind: str = "best") -> None:
        """Load a prompt checkpoint into ``model`` after checking it belongs to its backbone."""
        path = self.prompts_path(kind)
        if not path.is_file():
            raise RunFolderError(path, "missing (the run has not finished an epoch)")
        try:
            with safe_open(str(path), framework="pt") as handle:
                fingerprint = (handle.metadata() or {}).get("fingerprint", "")
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # noqa: BLE001 - any decoding failure of the file
            raise RunFolderError(path, f"is not a readable safetensors file ({error})") from None
        check_fingerprint(fingerprint, model.backbone, str(path))
        try:
            model.load_prompt_state_dict({k: v.to(model.device) for k, v in state.items()})
        except ValueError as error:
            raise RunFolderError(path, str(error)) from None

    # train_state.pt --------------------------------------------------------------------------
    def save_state(self, state: TrainState) -> None:
        atomic_write(self.state_path, lambda tmp: torch.save(asdict(state), tmp))

    def load_state(self) -> TrainState | None:
        """The saved training state, ``None`` if there is none yet."""
        if not self.state_path.is_file():
            return None
        try:
            data = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - truncated, not a torch file, unsafe pickle
            raise RunFolderError(
                self.state_path, f"cannot be read ({type(error).__name__}); delete it to restart"
            ) from None
        if not isinstance(data, dict) or set(STATE_KEYS) - set(data):
            raise RunFolderError(self.state_path, "is not a ppad training state; delete it to restart")
        return TrainState(**{key: data[key] for key in STATE_KEYS})

    def restore(self, model: PromptDetector, prompts: dict[str, torch.Tensor]) -> None:
        """Load saved learned tensors into ``model``; a mismatch names the state file."""
        try:
            model.load_learned_state_dict({k: v.to(model.device) for k, v in prompts.items()})
        except ValueError as error:
            raise RunFolderError(self.state_path, str(error)) from None

    # evaluation/metrics.json -----------------------------------------------------------------
    def read_metrics(self, evaluation_dir: str | Path | None = None) -> dict[str, Any]:
        path = self.metrics_path(evaluation_dir)
        return validate_metrics(_read_json(path), path)

    # the model --------------------------------------------------------------------------------
    def load_model(
        self,
        backbone: str | Path | Backbone | None = None,
        checkpoint: str = "best",
        device: str | torch.device = "cpu",
    ) -> PromptDetector:
        """Rebuild the trained model; ``backbone`` overrides the recorded weights path (e.g. after
        moving the file), which must still hash to the recorded fingerprint."""
        self.prompts_path(checkpoint)  # a bad checkpoint name fails before any loading
        config = self.read_config()
        recorded = config.backbone
        if backbone is None or isinstance(backbone, str | Path):
            backbone = load_backbone(backbone or recorded.source, recorded.architecture, device)
        check_fingerprint(recorded.fingerprint, backbone, f"the prompts in {self.root}")
        try:  # a damaged setting can pass the config's reading and fail only when the model is built
            method = get_method(config.method)
            model = method.build(backbone, method.config_from_dict(config.model))
        except (TypeError, ValueError, KeyError) as error:
            raise RunFolderError(self.config_path, f"cannot rebuild the model ({error})") from None
        self.load_prompts(model, checkpoint)
        self._check_segmenter(model)
        model.trained_on = self.read_manifest().seen_files() if self.manifest_path.is_file() else None
        return model.eval()

    def _check_segmenter(self, model: PromptDetector) -> None:
        """A lung-field run scored with other segmenter weights than it was trained with: say so."""
        if model.film_lungs is None or not self.manifest_path.is_file():
            return
        recorded = self.read_manifest().record.get("regions", {}).get("segmenter", {}).get("sha256")
        if recorded and recorded != model.film_lungs.fingerprint:
            log.warning(
                "%s was trained on lung fields from segmenter weights %s…, now %s…: its regions differ",
                self.root,
                recorded[:12],
                model.film_lungs.fingerprint[:12],
            )


def load_run(
    run_dir: str | Path,
    backbone: str | Path | Backbone | None = None,
    checkpoint: str = "best",
    device: str | torch.device = "cpu",
) -> PromptDetector:
    """Rebuild a trained model (of the run's method) from a run folder."""
    return RunFolder(run_dir).load_model(backbone, checkpoint, device)
