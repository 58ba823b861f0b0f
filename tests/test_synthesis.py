from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ppad.regions import PPAD_REGIONS
from ppad.synthesis import PAPER_GAMMA_WEIGHTS, StructurePreservingSynthesis, boundary_distance, get_synthesis
from ppad.synthesis.perlin import perlin_noise


@pytest.fixture
def image():
    """A textured, structured test image in (0, 1)."""
    yy, xx = np.mgrid[0:224, 0:224] / 224
    texture = 0.5 + 0.3 * np.sin(12 * xx) * np.cos(9 * yy) + 0.1 * ((xx * 20).astype(int) % 2)
    return np.clip(texture, 0.05, 0.95).astype(np.float32)


def test_perlin_noise_is_seeded_and_bounded():
    a = perlin_noise((50, 60), (3, 4), np.random.default_rng(0))
    b = perlin_noise((50, 60), (3, 4), np.random.default_rng(0))
    assert a.shape == (50, 60) and np.array_equal(a, b)
    assert np.abs(a).max() <= 1.0 + 1e-6 and a.std() > 0.05


@pytest.mark.parametrize("seed", range(12))
def test_mask_is_one_irregular_connected_region_starting_in_the_region(image, seed):
    regions = PPAD_REGIONS.pixel_masks(224)
    region = regions[seed % len(regions)]
    result = get_synthesis("sas")(image, region, np.random.default_rng(seed))
    mask = result.mask
    assert mask.shape == image.shape and mask.dtype == bool
    assert ndimage.label(mask)[1] == 1
    assert region[result.params["center"]]
    rows, cols = np.nonzero(mask)
    box_area = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    assert mask.sum() >= 9 and mask.sum() < 0.97 * box_area  # not a rectangle


@pytest.mark.parametrize("weight", PAPER_GAMMA_WEIGHTS)
def test_gamma_is_one_outside_and_on_the_boundary_and_sign_sets_direction(image, weight):
    sas = StructurePreservingSynthesis(weights=(weight,))
    result = sas(image, PPAD_REGIONS.pixel_masks(224)[-1], np.random.default_rng(5))
    mask, out = result.mask, result.image
    boundary = mask & ~ndimage.binary_erosion(mask)
    assert np.array_equal(out[~mask], image[~mask])
    assert np.array_equal(out[boundary], image[boundary])
    inside = mask & ~boundary
    if weight > 0:
        assert (out[inside] <= image[inside]).all() and (out[inside] < image[inside]).any()
    else:
        assert (out[inside] >= image[inside]).all() and (out[inside] > image[inside]).any()
    gamma = result.params["gamma"]
    assert gamma.max() == pytest.approx(max(1.0, 1.0 + weight), abs=1e-5)
    assert gamma.min() == pytest.approx(min(1.0, 1.0 + weight), abs=1e-5)
    np.testing.assert_allclose(out, image**gamma, rtol=1e-6)


def test_gamma_grows_with_distance_to_the_boundary(image):
    result = StructurePreservingSynthesis(weights=(2.0,))(image, np.ones((224, 224), bool), np.random.default_rng(2))
    distance = boundary_distance(result.mask)
    inside = result.mask
    np.testing.assert_allclose(result.params["gamma"][inside], 1 + distance[inside] / distance.max() * 2.0, rtol=1e-6)


def test_same_seed_same_output_other_seed_other_output(image):
    region = PPAD_REGIONS.pixel_masks(224)[0]
    a = get_synthesis("sas")(image, region, np.random.default_rng(9))
    b = get_synthesis("sas")(image, region, np.random.default_rng(9))
    c = get_synthesis("sas")(image, region, np.random.default_rng(10))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, c.mask)


def test_structure_is_preserved(image):
    """Edges outside the mask are untouched; inside, the intensity order of neighbours is kept."""
    result = StructurePreservingSynthesis(weights=(3.0,))(image, np.ones((224, 224), bool), np.random.default_rng(4))
    grown = ndimage.binary_dilation(result.mask, iterations=2)
    for axis in (0, 1):
        np.testing.assert_array_equal(ndimage.sobel(result.image, axis)[~grown], ndimage.sobel(image, axis)[~grown])
    # horizontal neighbour pairs inside the mask with clearly different intensities keep their order
    left, right = image[:, :-1], image[:, 1:]
    pairs = result.mask[:, :-1] & result.mask[:, 1:] & (np.abs(left - right) > 0.05)
    out_left, out_right = result.image[:, :-1], result.image[:, 1:]
    assert pairs.sum() > 10
    assert np.mean(np.sign(left - right)[pairs] == np.sign(out_left - out_right)[pairs]) > 0.99


def test_empty_region_and_unknown_task_are_errors(image):
    with pytest.raises(ValueError, match="empty"):
        get_synthesis("sas")(image, np.zeros((224, 224), bool), np.random.default_rng(0))
    with pytest.raises(KeyError, match="known: sas"):
        get_synthesis("nope")
