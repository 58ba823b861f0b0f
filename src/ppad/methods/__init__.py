"""Detection methods as pure modules, and their run-folder checkpoints."""

from ppad.methods.checkpoint import BackboneMismatchError, load_prompts, load_run, save_prompts, write_run_config
from ppad.methods.ppad import PPADConfig, PPADModel

__all__ = [
    "BackboneMismatchError",
    "PPADConfig",
    "PPADModel",
    "load_prompts",
    "load_run",
    "save_prompts",
    "write_run_config",
]
