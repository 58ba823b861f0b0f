"""Run folders: one type owns the files a run writes, versioned and validated on read."""

from ppad.runs.folder import PROMPT_FILES, RunFolder, TrainState, check_fingerprint, load_run
from ppad.runs.records import (
    RUN_FORMAT_VERSION,
    BackboneMismatchError,
    BackboneRecord,
    RunConfig,
    RunConflictError,
    RunFolderError,
    RunIdentity,
    RunManifest,
)

__all__ = [
    "PROMPT_FILES",
    "RUN_FORMAT_VERSION",
    "BackboneMismatchError",
    "BackboneRecord",
    "RunConfig",
    "RunConflictError",
    "RunFolder",
    "RunFolderError",
    "RunIdentity",
    "RunManifest",
    "TrainState",
    "check_fingerprint",
    "load_run",
]
