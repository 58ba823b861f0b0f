"""Image prompt: learnable patch vectors stand in for the patches outside a region.

``E = E_i ⊙ M + P ⊙ (1 − M)``, applied to the patch-projection output, before the class token
and positional embedding are added. ``M`` is 1 on patches inside the region, so an all-ones
mask (the whole-image view) leaves the image untouched.
"""

from __future__ import annotations

import torch
from torch import nn

PATCH_INIT_STD = 0.02


class PatchPrompt(nn.Module):
    """One learnable vector per patch position of a ``n_patches`` grid."""

    def __init__(self, n_patches: int, width: int) -> None:
        super().__init__()
        self.patches = nn.Parameter(torch.randn(n_patches, width) * PATCH_INIT_STD)

    def forward(self, patch_embeddings: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """[B, N, W] embeddings, [B, N] keep-mask (1 = image patch) → prompted embeddings."""
        if patch_embeddings.shape[1:] != self.patches.shape:
            raise ValueError(
                f"image has {patch_embeddings.shape[1]} patches of width {patch_embeddings.shape[2]}; "
                f"the prompt was built for {tuple(self.patches.shape)} (train and score at the same image size)"
            )
        keep = keep[..., None].to(patch_embeddings.dtype)
        return patch_embeddings * keep + self.patches.to(patch_embeddings.dtype) * (1 - keep)
