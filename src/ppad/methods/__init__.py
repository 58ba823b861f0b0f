"""Detection methods as pure modules, found by name, and their run-folder checkpoints."""

from ppad.methods.base import DetectorConfig, PromptDetector
from ppad.methods.checkpoint import BackboneMismatchError, load_prompts, load_run, save_prompts, write_run_config
from ppad.methods.maple import MaPLeConfig, MaPLeModel
from ppad.methods.ppad import PPADConfig, PPADModel
from ppad.methods.registry import METHODS, Method, get_method
from ppad.methods.zeroshot import ZeroShotConfig, ZeroShotModel

__all__ = [
    "METHODS",
    "BackboneMismatchError",
    "DetectorConfig",
    "MaPLeConfig",
    "MaPLeModel",
    "Method",
    "PPADConfig",
    "PPADModel",
    "PromptDetector",
    "ZeroShotConfig",
    "ZeroShotModel",
    "get_method",
    "load_prompts",
    "load_run",
    "save_prompts",
    "write_run_config",
]
