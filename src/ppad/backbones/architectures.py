"""Named CLIP architectures (found by name) built with open_clip's CLIP module.

open_clip is imported only when a CLIP is built: the wheel-tower backbones never need it (a fresh
process loading ``cxr-lite`` took 5.7 s instead of 6.2 s on 2 CPU cores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ppad.backbones.preprocessing import Preprocessing
from ppad.errors import UnknownNameError

if TYPE_CHECKING:
    import open_clip

CHEXZERO_PREPROCESSING = Preprocessing(image_size=224, mean=0.39799, std=0.32721, resize_mode="pad")


@dataclass(frozen=True)
class Architecture:
    """An OpenAI-style CLIP layout: the shapes needed to rebuild the module from weights."""

    name: str
    embed_dim: int
    vision: dict = field(hash=False)
    text: dict = field(hash=False)
    quick_gelu: bool = True
    preprocessing: Preprocessing = CHEXZERO_PREPROCESSING

    def build(self) -> open_clip.CLIP:
        """A freshly initialised CLIP module with this layout (fp32, CPU)."""
        import open_clip

        return open_clip.CLIP(
            embed_dim=self.embed_dim,
            vision_cfg=open_clip.CLIPVisionCfg(**self.vision),
            text_cfg=open_clip.CLIPTextCfg(**self.text),
            quick_gelu=self.quick_gelu,
        )

    def build_random(self, seed: int) -> open_clip.CLIP:
        """A CLIP module with deterministic random weights (tests, the embedded demo)."""
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            return self.build()
        finally:
            torch.random.set_rng_state(state)


ARCHITECTURES: dict[str, Architecture] = {
    # OpenAI CLIP ViT-B/32: the layout of CheXzero's checkpoints.
    "ViT-B/32": Architecture(
        name="ViT-B/32",
        embed_dim=512,
        vision={"image_size": 224, "layers": 12, "width": 768, "patch_size": 32, "head_width": 64},
        text={"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
    ),
    "ViT-B/16": Architecture(
        name="ViT-B/16",
        embed_dim=512,
        vision={"image_size": 224, "layers": 12, "width": 768, "patch_size": 16, "head_width": 64},
        text={"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
    ),
    # A few-megabyte stand-in with the real tokenizer's vocabulary: tests and `ppad demo`.
    "tiny": Architecture(
        name="tiny",
        embed_dim=32,
        vision={"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
        text={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    ),
}


def get_architecture(name: str) -> Architecture:
    """Look an architecture up by name; the error lists the known names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnknownNameError(f"unknown backbone architecture {name!r}; known: {known}") from None
