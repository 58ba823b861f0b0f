"""CXR-CLIP's losses, with label-aware positives.

Image–label data sets repeat texts: two films with the same label set get the same kind of text,
so treating them as negatives of each other (plain InfoNCE) punishes correct alignments. Here every
pair whose label sets are identical is a positive, with the target mass shared among them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(groups_a: torch.Tensor, groups_b: torch.Tensor) -> torch.Tensor:
    """[A, B] row-normalised targets: 1 where the label-set ids agree."""
    same = (groups_a[:, None] == groups_b[None, :]).float()
    return same / same.sum(dim=1, keepdim=True).clamp(min=1)


def multi_positive_contrastive(
    a: torch.Tensor, b: torch.Tensor, groups_a: torch.Tensor, groups_b: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric cross-entropy between cosine-similarity logits and label-aware soft targets."""
    logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    forward = -(soft_targets(groups_a, groups_b) * logits.log_softmax(dim=1)).sum(dim=1).mean()
    backward = -(soft_targets(groups_b, groups_a) * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (forward + backward) / 2


def cxr_clip_loss(
    images: tuple[torch.Tensor, torch.Tensor],
    texts: tuple[torch.Tensor, torch.Tensor],
    groups: torch.Tensor,
    scale: torch.Tensor,
    icl_weight: float = 1.0,
    tcl_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Image–text loss over all four (view, text) pairings + ICL (two views of one film, only
    itself positive) + TCL (two texts of one label set, identical label sets positive)."""
    identity = torch.arange(len(groups), device=groups.device)
    clip = torch.stack(
        [multi_positive_contrastive(image, text, groups, groups, scale) for image in images for text in texts]
    ).mean()
    icl = multi_positive_contrastive(images[0], images[1], identity, identity, scale)
    tcl = multi_positive_contrastive(texts[0], texts[1], groups, groups, scale)
    total = clip + icl_weight * icl + tcl_weight * tcl
    return {"loss": total, "clip": clip.detach(), "icl": icl.detach(), "tcl": tcl.detach()}
