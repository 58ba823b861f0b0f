"""Frozen CLIP backbones: architectures by name, strict safe loading, preprocessing."""

from ppad.backbones.architectures import ARCHITECTURES, Architecture, get_architecture
from ppad.backbones.backbone import ClipBackbone, weights_fingerprint
from ppad.backbones.device import resolve_device
from ppad.backbones.dual_tower import DualTowerBackbone, DualTowerSpec
from ppad.backbones.factory import (
    DEFAULT_BACKBONE,
    TINY,
    load_backbone,
    save_dual_tower,
    save_openai_state_dict,
    shipped_backbones,
    tiny_weights_path,
)
from ppad.backbones.feature_cache import FeatureCache
from ppad.backbones.loading import CheckpointError, read_state_dict
from ppad.backbones.preprocessing import Preprocessing
from ppad.backbones.protocol import Backbone
from ppad.backbones.towers import TOWERS, TowerError

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Backbone",
    "DEFAULT_BACKBONE",
    "DualTowerBackbone",
    "DualTowerSpec",
    "FeatureCache",
    "TOWERS",
    "TowerError",
    "save_dual_tower",
    "shipped_backbones",
    "CheckpointError",
    "ClipBackbone",
    "Preprocessing",
    "TINY",
    "get_architecture",
    "load_backbone",
    "read_state_dict",
    "resolve_device",
    "save_openai_state_dict",
    "tiny_weights_path",
    "weights_fingerprint",
]
