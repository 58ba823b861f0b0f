"""The names the command line offers as choices, as plain tuples: no PyTorch, so that ``ppad``
parses and checks its options in a fraction of a second.

Plain constants are defined here and imported by the modules that use them; a registry of
objects (methods, architectures, …) keeps its dictionary, and ``tests/test_choices.py`` checks
that its names equal the tuple here, in order.
"""

from __future__ import annotations

DEFAULT_BACKBONE = "cxr-lite"
ARCHITECTURE_NAMES = ("ViT-B/32", "ViT-B/16", "tiny")
METHOD_NAMES = (
    "ppad",
    "ppad-text",
    "coop",
    "maple",
    "zeroshot",
    "mediclip",
    "knn",
    "patch-knn",
    *(f"{name}+knn" for name in ("ppad", "ppad-text", "coop", "maple", "zeroshot", "mediclip")),
)
TEMPLATES = ("words", "chexzero")  # zeroshot prompts
PRESET_NAMES = ("ppad", "reference")
REGION_SET_NAMES = ("ppad", "lungs", "whole")  # image halves / each film's lung fields / one view
SIDES = ("anatomical", "image")  # region sides: the patient's (radiological) or the image's
PATCH_RULE_NAMES = ("majority", "any")
LOSS_NAMES = ("softmax-bce", "two-sigmoid", "focal-dice")
SYNTHESIS_NAMES = (
    "sas",
    "sas-reference",
    "fpi",
    "pii",
    "cutpaste",
    "cutpaste-scar",
    "cutpaste-support",
    "anatpaste",
    "gaussian-intensity",
    "source",
    "sink",
    "identity",
    "mediclip",
    "mediclip-train",
)
ABLATION_NAMES = ("prompts", "synthesis", "preset")
CHECKPOINTS = ("best", "last")
DEFAULT_MAP_METHOD = "auto"
MAP_METHOD_NAMES = ("mediclip", "patches", "text", "memory", "gradient", "sweep")
#: What the map method ``auto`` picks: the first that applies. A MediCLIP run's own map (what it was
#: trained to draw and its score is the maximum of); a patch memory's own patch scores (what its
#: score is the top-k mean of); then best first by pixel AUC against the NIH
#: boxes with cxr-lite, whole-film maps (memory 0.705, sweep 0.582, text 0.537, gradient 0.518;
#: centre prior 0.830). Restricted to the lung fields, memory stays first (0.832; the README's table).
MAP_AUTO_ORDER = ("mediclip", "patches", "memory", "sweep", "text", "gradient")
