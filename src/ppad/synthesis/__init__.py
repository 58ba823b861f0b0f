"""Anomaly synthesis tasks behind one interface, found by name.

Tasks that borrow from other normal images (FPI, PII, cut-paste from a support image) take
them as ``sources``; training passes the support set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ppad.errors import UnknownNameError
from ppad.synthesis.base import SynthesisResult, SynthesisTask, sample_pixel
from ppad.synthesis.mediclip import GaussianIntensityChange, Identity, Mixture, RadialDeformation, SecondSite
from ppad.synthesis.patches import AnatPaste, CutPaste, ForeignPatchBlend, segmented_lungs
from ppad.synthesis.poisson import poisson_blend
from ppad.synthesis.sas import PAPER_GAMMA_WEIGHTS, StructurePreservingSynthesis, boundary_distance, gamma_map
from ppad.synthesis.shapes import ReferenceScribble, RegionBlob

Sources = np.ndarray | None
MEDICLIP_TASKS = ("cutpaste-support", "gaussian-intensity", "source", "sink")
#: what the MediCLIP method trains on (its authors' code): one of these (p = 0.25 each) in a region,
#: and with p = 0.5 a second draw in the same region
MEDICLIP_TRAINING_TASKS = ("cutpaste-support", "gaussian-intensity", "source", "identity")

SYNTHESIS_TASKS: dict[str, Callable[[Sources], SynthesisTask]] = {
    "sas": lambda sources: StructurePreservingSynthesis(),
    "sas-reference": lambda sources: StructurePreservingSynthesis(
        geometry=ReferenceScribble(), fade_at_edge=False, name="sas-reference"
    ),
    "fpi": lambda sources: ForeignPatchBlend(sources=sources),
    "pii": lambda sources: ForeignPatchBlend(blend=poisson_blend, alpha=(0.05, 1.0), sources=sources, name="pii"),
    "cutpaste": lambda sources: CutPaste(),
    "cutpaste-scar": lambda sources: CutPaste(scar=True, name="cutpaste-scar"),
    "cutpaste-support": lambda sources: CutPaste(from_support=True, sources=sources, name="cutpaste-support"),
    "anatpaste": lambda sources: AnatPaste(),
    "gaussian-intensity": lambda sources: GaussianIntensityChange(),
    "source": lambda sources: RadialDeformation(kind="source", name="source"),
    "sink": lambda sources: RadialDeformation(kind="sink", name="sink"),
    "identity": lambda sources: Identity(),
    "mediclip": lambda sources: Mixture(
        tuple(get_synthesis(name, sources) for name in MEDICLIP_TASKS), name="mediclip"
    ),
    "mediclip-train": lambda sources: SecondSite(
        Mixture(tuple(get_synthesis(name, sources) for name in MEDICLIP_TRAINING_TASKS)), name="mediclip-train"
    ),
}


def get_synthesis(name: str, sources: Sources = None) -> SynthesisTask:
    """A synthesis task with its default settings, by name; ``sources`` = other normal images."""
    try:
        factory = SYNTHESIS_TASKS[name]
    except KeyError:
        raise UnknownNameError(f"unknown synthesis {name!r}; known: {', '.join(SYNTHESIS_TASKS)}") from None
    return factory(sources)


__all__ = [
    "MEDICLIP_TASKS",
    "MEDICLIP_TRAINING_TASKS",
    "PAPER_GAMMA_WEIGHTS",
    "SYNTHESIS_TASKS",
    "AnatPaste",
    "CutPaste",
    "ForeignPatchBlend",
    "GaussianIntensityChange",
    "Identity",
    "Mixture",
    "RadialDeformation",
    "ReferenceScribble",
    "RegionBlob",
    "SecondSite",
    "StructurePreservingSynthesis",
    "SynthesisResult",
    "SynthesisTask",
    "boundary_distance",
    "gamma_map",
    "get_synthesis",
    "sample_pixel",
    "segmented_lungs",
]
