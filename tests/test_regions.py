from __future__ import annotations

import numpy as np
import pytest
import torch

from ppad.regions import PPAD_REGIONS, Region, get_region_set


def test_paper_regions_follow_the_radiological_convention():
    masks = dict(zip(PPAD_REGIONS.names, PPAD_REGIONS.pixel_masks(224)))
    assert PPAD_REGIONS.names == ["left lung", "right lung", "upper lung", "lower lung", ""]
    # patient's left lung is displayed on the image's right half
    assert masks["left lung"][:, 112:].all() and not masks["left lung"][:, :112].any()
    assert masks["right lung"][:, :112].all() and not masks["right lung"][:, 112:].any()
    # the paper's upper/lower split: rows 0-119 and 120-223
    assert np.flatnonzero(masks["upper lung"][:, 0]).tolist() == list(range(120))
    assert np.flatnonzero(masks["lower lung"][:, 0]).tolist() == list(range(120, 224))
    assert masks[""].all()


def patch_masks(backbone, regions) -> torch.Tensor:
    """[R, N] patch masks of a ViT (patch 32) for a region set, by its patch rule."""
    return backbone.keep_of_masks(torch.from_numpy(regions.pixel_masks(224)), regions.patch_rule)[..., 0]


def test_patch_masks_use_majority_coverage(backbone):
    keep = patch_masks(backbone, PPAD_REGIONS).reshape(5, 7, 7)
    upper = keep[PPAD_REGIONS.names.index("upper lung")]
    # row 3 of patches spans pixel rows 96-127: 24 of 32 rows are upper → inside
    assert upper[:, 0].tolist() == [1, 1, 1, 1, 0, 0, 0]
    left = keep[PPAD_REGIONS.names.index("left lung")]
    assert left[0].tolist() == [0, 0, 0, 1, 1, 1, 1]  # middle column is half covered → inside
    assert keep[-1].min() == 1


def test_regions_are_validated_and_found_by_name():
    with pytest.raises(ValueError):
        Region("bad", top=0.6, bottom=0.4)
    with pytest.raises(KeyError, match="known: lung-fields, lungs, ppad, whole"):
        get_region_set("nope")
