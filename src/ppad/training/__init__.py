"""Training glue around the pure modules: the loop and whole-run orchestration."""

from ppad.training.loop import TrainSettings, fit
from ppad.training.run import train_run

__all__ = ["TrainSettings", "fit", "train_run"]
