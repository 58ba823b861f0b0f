"""Maps from the detector's own outputs: a gradient map for every method and backbone, and the
image-prompt sweep for PPAD."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ppad.methods.base import ABNORMAL_CLASS, PromptDetector
from ppad.regions import Region, RegionSet

WINDOW = 0.25  # window side, fraction of the image side
STRIDE = 0.125
SMOOTH_SIGMA = 1 / 32  # gradient maps are smoothed with a Gaussian of this many image sides


def gradient_map(model: PromptDetector, images: torch.Tensor) -> torch.Tensor:
    """[B, S, S] input × gradient of the summed view log-odds, Gaussian-smoothed."""
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        p = model.view_probabilities(x).clamp(1e-6, 1 - 1e-6)
        (grad,) = torch.autograd.grad((p.log() - (-p).log1p()).sum(), x)
    saliency = (grad * x).sum(dim=1).detach().cpu().numpy()
    sigma = SMOOTH_SIGMA * images.shape[-1]
    return torch.from_numpy(ndimage.gaussian_filter(saliency, sigma=(0, sigma, sigma), mode="reflect"))


WINDOW_STARTS = np.arange(0, 1 - WINDOW + 1e-9, STRIDE)
WINDOWS = RegionSet(
    "windows",
    tuple(Region(f"{t:.3f},{u:.3f}", t, t + WINDOW, u, u + WINDOW) for t in WINDOW_STARTS for u in WINDOW_STARTS),
)


def sweep_map(model: PromptDetector, images: torch.Tensor) -> torch.Tensor:
    """[B, S, S] PPAD's image prompt outside each small window: the window's abnormal log-odds,
    averaged over the position views (not the whole image) whose region holds its centre; each
    pixel gets the mean over the windows covering it."""
    size, backbone = images.shape[-1], model.backbone
    embeddings = backbone.input_embeddings(images)
    keep = backbone.keep_of_masks(torch.from_numpy(WINDOWS.pixel_masks(size)), WINDOWS.patch_rule)  # [K, …]
    features = torch.stack(
        [backbone.encode_input_embeddings(model.image_prompt(embeddings, k.expand_as(embeddings))) for k in keep], 1
    )  # [B, K, D]
    logits = backbone.logit_scale * torch.einsum("bkd,rcd->bkrc", F.normalize(features, dim=-1), model.text_features())
    log_odds = logits[..., ABNORMAL_CLASS] - logits[..., 1 - ABNORMAL_CLASS]  # [B, K, R]
    holds = torch.tensor(
        [[_holds(region, window) for region in model.regions.regions] for window in WINDOWS.regions],
        dtype=log_odds.dtype,
        device=log_odds.device,
    )
    values = (log_odds * holds).sum(-1) / holds.sum(-1).clamp(min=1)
    masks = torch.from_numpy(WINDOWS.pixel_masks(size)).to(values)  # [K, S, S]
    return torch.einsum("bk,khw->bhw", values, masks) / masks.sum(0).clamp(min=1)


def _holds(region: Region, window: Region) -> bool:
    """Whether a position region (not the whole image) holds the window's centre."""
    cy, cx = (window.top + window.bottom) / 2, (window.left + window.right) / 2
    whole = (region.top, region.bottom, region.left, region.right) == (0, 1, 0, 1)
    return not whole and region.top <= cy < region.bottom and region.left <= cx < region.right
