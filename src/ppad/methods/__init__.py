"""Detection methods as pure modules, found by name (run folders live in :mod:`ppad.runs`)."""

from ppad.methods.base import DetectorConfig, PromptDetector
from ppad.methods.maple import MaPLeConfig, MaPLeModel
from ppad.methods.mediclip import MediCLIPConfig, MediCLIPModel
from ppad.methods.ppad import PPADConfig, PPADModel
from ppad.methods.presets import PRESETS, Preset, get_preset
from ppad.methods.registry import METHODS, Method, get_method
from ppad.methods.zeroshot import ZeroShotConfig, ZeroShotModel

__all__ = [
    "METHODS",
    "PRESETS",
    "DetectorConfig",
    "MaPLeConfig",
    "MaPLeModel",
    "MediCLIPConfig",
    "MediCLIPModel",
    "Method",
    "PPADConfig",
    "PPADModel",
    "Preset",
    "PromptDetector",
    "ZeroShotConfig",
    "ZeroShotModel",
    "get_method",
    "get_preset",
]
