"""Training glue around the pure modules: the loop and whole-run orchestration."""

from ppad.training.loop import TrainSettings, fit
from ppad.training.run import RunConflictError, resolve_device, train_run

__all__ = ["RunConflictError", "TrainSettings", "fit", "resolve_device", "train_run"]
