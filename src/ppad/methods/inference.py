"""Run a model over films in batches: the one loop that scoring, validation and calibration share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ppad.lungs.postprocess import LungFields
from ppad.regions.anatomy import film_region_masks

if TYPE_CHECKING:  # base runs its validation through here
    from ppad.methods.base import PromptDetector

T = TypeVar("T")


def map_batches(
    model: PromptDetector,
    images: np.ndarray,
    step: Callable[[torch.Tensor, torch.Tensor | None], T],
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "scoring",
    lungs: Sequence[LungFields] | None = None,
) -> list[T]:
    """``step(normalised batch, its region masks or None)`` on each batch of [N, S, S] films in [0, 1],
    inside :meth:`PromptDetector.inference` (text features computed once). ``lungs``: each film's
    lung fields to take region masks from (default: None, the model segments what it reads).

    Under ``torch.no_grad`` rather than ``inference_mode``: features a :class:`FeatureCache` keeps
    from here are reused in training, where inference tensors may not enter autograd."""
    results = []
    with model.inference(), tqdm(total=len(images), desc=desc, unit="film", disable=not progress, leave=False) as bar:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(model.device)
            masks = None
            if lungs is not None:
                regions = film_region_masks(model.regions, lungs[start : start + batch_size])
                masks = torch.from_numpy(regions).to(model.device, torch.float32)
            results.append(step(model.preprocessing.normalize(batch), masks))
            bar.update(len(batch))
    return results


def predict_views(
    model: PromptDetector,
    images: np.ndarray,
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "scoring",
    lungs: Sequence[LungFields] | None = None,
) -> np.ndarray:
    """[N, S, S] images in [0, 1] → [N, R] abnormal probability per view (text features cached).
    ``lungs``: each image's lung fields to score on (default: the model segments what it reads)."""

    def views(batch: torch.Tensor, masks: torch.Tensor | None) -> np.ndarray:
        return model.view_probabilities(batch, masks).float().cpu().numpy()

    empty = np.zeros((0, len(model.view_names)), dtype=np.float32)
    return np.concatenate([empty, *map_batches(model, images, views, batch_size, progress, desc, lungs)])
