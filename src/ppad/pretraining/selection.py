"""How pre-training picks its epoch: zero-shot AUC of prompt pairs on each table's val split."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from ppad.backbones.dual_tower import DualTowerBackbone
from ppad.pretraining.data import Cache, with_tail

ZERO_SHOT_PROMPTS = {"words": ("normal", "pneumonia"), "chexzero": ("no pneumonia", "pneumonia")}


TAIL_CHUNK = 256


def zero_shot_auc(backbone: DualTowerBackbone, head_inputs: torch.Tensor, labels) -> dict[str, float]:
    """Validation AUC of the zero-shot prompt pairs (target finding vs no finding)."""
    labels = np.asarray(labels)
    keep = labels >= 0
    with torch.no_grad():
        image = F.normalize(backbone.image_head(head_inputs.to(backbone.device)), dim=-1)
        result = {}
        for name, prompts in ZERO_SHOT_PROMPTS.items():
            text = F.normalize(backbone.encode_text(backbone.tokenize(list(prompts)).to(backbone.device)), dim=-1)
            probability = (image @ text.T).softmax(dim=-1)[:, 1].cpu().numpy()
            result[name] = float(roc_auc_score(labels[keep], probability[keep]))
    return result


def validation_aucs(backbone: DualTowerBackbone, cache: Cache) -> dict[str, dict[str, float]]:
    """Zero-shot AUC on each table's readable val films (tables without both classes are left out)."""
    layout, chunks = cache.layout, []
    with torch.no_grad():
        for first in range(0, len(layout.val), TAIL_CHUNK):
            rows = np.arange(first, min(first + TAIL_CHUNK, len(layout.val)))
            pooled, maps = (torch.from_numpy(part.read(rows)) for part in (cache.val_pooled, cache.val_maps))
            chunks.append(with_tail(backbone, pooled, maps).cpu())
    inputs = torch.cat(chunks)
    result = {}
    for index, source in enumerate(cache.sources):
        mask = (layout.val_sources == index) & cache.val_ok
        if {0, 1} <= set(layout.val_labels[mask].tolist()):
            result[source] = zero_shot_auc(backbone, inputs[torch.from_numpy(mask)], layout.val_labels[mask])
    return result
