"""How pre-training picks its epoch: zero-shot AUC of prompt pairs on each table's val split."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from ppad.backbones.dual_tower import DualTowerBackbone
from ppad.pretraining.data import Cache, _with_tail

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
    """Zero-shot AUC on each table's val split (tables without both classes are left out)."""
    with torch.no_grad():
        inputs = torch.cat(
            [
                _with_tail(backbone, cache.val_pooled[i : i + TAIL_CHUNK], cache.val_maps[i : i + TAIL_CHUNK])
                for i in range(0, len(cache.val_labels), TAIL_CHUNK)
            ]
        )
    result = {}
    for index, source in enumerate(cache.sources):
        mask = cache.val_sources == index
        if {0, 1} <= set(cache.val_labels[mask].tolist()):
            result[source] = zero_shot_auc(backbone, inputs[mask], cache.val_labels[mask].numpy())
    return result
