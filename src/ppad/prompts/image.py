"""Image prompt: learnable values stand in for the input outside a region.

``E = E_i ⊙ M + P ⊙ (1 − M)``, applied to the backbone's input embedding: on a ViT the patch
projection's output (the paper's patch prompt, before the class token and positional embedding),
on a CNN the normalised pixels. ``M`` is 1 inside the region, so an all-ones mask (the
whole-image view) leaves the image untouched. With patch-aligned masks the two coincide on a ViT,
because the patch projection is linear.
"""

from __future__ import annotations

import torch
from torch import nn

PROMPT_INIT_STD = 0.02  # ppad's default; the authors' code uses 0.2


class ImagePrompt(nn.Module):
    """One learnable tensor shaped like one image's input embedding."""

    def __init__(self, shape: tuple[int, ...], init_std: float = PROMPT_INIT_STD) -> None:
        super().__init__()
        self.values = nn.Parameter(torch.randn(shape) * init_std)

    def forward(self, embeddings: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """[B, *shape] embeddings, [B, …] keep-mask broadcastable to them (1 = image) → prompted."""
        if embeddings.shape[1:] != self.values.shape:
            raise ValueError(
                f"image input embedding has shape {tuple(embeddings.shape[1:])}; the prompt was built for "
                f"{tuple(self.values.shape)} (train and score at the same image size)"
            )
        keep = keep.to(embeddings.dtype)
        return embeddings * keep + self.values.to(embeddings.dtype) * (1 - keep)
