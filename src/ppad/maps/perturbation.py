"""Maps that need nothing but the detector's own outputs, so they work for every method and backbone."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ppad.regions import Region, RegionSet

WINDOW = 0.25  # window side, fraction of the image side
STRIDE = 0.125
SMOOTH_SIGMA = 1 / 32  # gradient maps are smoothed with a Gaussian of this many image sides


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def gradient_map(model, images: torch.Tensor) -> torch.Tensor:
    """[B, S, S] input × gradient of the summed view log-odds, Gaussian-smoothed."""
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        target = _logit(model.view_probabilities(x)).sum()
        (grad,) = torch.autograd.grad(target, x)
    saliency = (grad * x).sum(dim=1, keepdim=True).detach()
    return _gaussian_blur(saliency, SMOOTH_SIGMA * images.shape[-1])[:, 0]


def windows(size: int) -> RegionSet:
    """The sliding windows as a region set (row-major), side ``WINDOW``, step ``STRIDE``."""
    starts = np.arange(0, 1 - WINDOW + 1e-9, STRIDE)
    return RegionSet("windows", tuple(Region(f"{t:.3f},{l:.3f}", t, t + WINDOW, l, l + WINDOW) for t in starts for l in starts))


def occlusion_map(model, images: torch.Tensor) -> torch.Tensor:
    """[B, S, S] drop of the final score's log-odds when a window is filled with the image's median."""
    size = images.shape[-1]
    masks = torch.from_numpy(windows(size).pixel_masks(size)).to(images.device)  # [K, S, S]
    median = images.flatten(2).median(dim=2).values[:, :, None, None]  # [B, 3, 1, 1]
    base = _final_logit(model, images)  # [B]
    drops = torch.stack(
        [base - _final_logit(model, torch.where(mask, median, images)) for mask in masks], dim=1
    )  # [B, K]
    return _spread(drops, masks)


def sweep_map(model, images: torch.Tensor) -> torch.Tensor:
    """[B, S, S] PPAD's image prompt outside each small window: its abnormal log-odds, averaged
    over the position views whose region holds the window's centre."""
    size = images.shape[-1]
    grid = windows(size)
    keep = model.backbone.region_keep(grid, size)  # [K, …] in the backbone's input-embedding layout
    masks = torch.from_numpy(grid.pixel_masks(size)).to(images.device)
    embeddings = model.backbone.input_embeddings(images)
    features = torch.stack(
        [model.backbone.encode_input_embeddings(model.image_prompt(embeddings, k.expand_as(embeddings))) for k in keep], 1
    )  # [B, K, D]
    features = F.normalize(features, dim=-1)
    text = model.text_features()  # [R, 2, D]
    logits = model.backbone.logit_scale * torch.einsum("bkd,rcd->bkrc", features, text)
    log_odds = logits[..., 1] - logits[..., 0]  # [B, K, R]
    region_masks = torch.from_numpy(model.regions.pixel_masks(size)).to(images.device)  # [R, S, S]
    centres = torch.tensor([_centre_pixel(m) for m in masks], device=images.device)
    holds = region_masks.flatten(1)[:, centres].T.float()  # [K, R]
    holds[:, [i for i, name in enumerate(model.regions.names) if name == ""]] = 0
    return _spread((log_odds * holds).sum(-1) / holds.sum(-1).clamp(min=1), masks)


def _centre_pixel(mask: torch.Tensor) -> int:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return int(rows.float().mean().round()) * mask.shape[1] + int(cols.float().mean().round())


def _final_logit(model, images: torch.Tensor) -> torch.Tensor:
    views = model.view_probabilities(images).float().cpu().numpy()
    return _logit(torch.from_numpy(np.asarray(model.aggregate(views), dtype=np.float32))).to(images.device)


def _spread(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """[B, K] window values → [B, S, S] mean over the windows covering each pixel."""
    masks = masks.float()
    return torch.einsum("bk,khw->bhw", values, masks) / masks.sum(0).clamp(min=1)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum())[None, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel[..., None, :])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel[..., :, None])
