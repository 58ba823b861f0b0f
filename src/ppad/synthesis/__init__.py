"""Anomaly synthesis tasks behind one interface, found by name."""

from ppad.synthesis.base import SynthesisResult, SynthesisTask, sample_pixel
from ppad.synthesis.sas import PAPER_GAMMA_WEIGHTS, StructurePreservingSynthesis, boundary_distance, gamma_map

SYNTHESIS_TASKS: dict[str, type] = {"sas": StructurePreservingSynthesis}


def get_synthesis(name: str) -> SynthesisTask:
    """A synthesis task with its default settings, by name."""
    try:
        return SYNTHESIS_TASKS[name]()
    except KeyError:
        raise KeyError(f"unknown synthesis {name!r}; known: {', '.join(sorted(SYNTHESIS_TASKS))}") from None


__all__ = [
    "PAPER_GAMMA_WEIGHTS",
    "SYNTHESIS_TASKS",
    "StructurePreservingSynthesis",
    "SynthesisResult",
    "SynthesisTask",
    "boundary_distance",
    "gamma_map",
    "get_synthesis",
    "sample_pixel",
]
