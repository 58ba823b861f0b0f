"""Frozen CLIP backbones: architectures by name, strict safe loading, preprocessing."""

from ppad.backbones.architectures import ARCHITECTURES, Architecture, get_architecture
from ppad.backbones.backbone import ClipBackbone, weights_fingerprint
from ppad.backbones.factory import TINY, load_backbone, save_openai_state_dict, tiny_weights_path
from ppad.backbones.loading import CheckpointError, read_state_dict
from ppad.backbones.preprocessing import Preprocessing

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CheckpointError",
    "ClipBackbone",
    "Preprocessing",
    "TINY",
    "get_architecture",
    "load_backbone",
    "read_state_dict",
    "save_openai_state_dict",
    "tiny_weights_path",
    "weights_fingerprint",
]
