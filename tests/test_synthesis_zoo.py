from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ppad.data.synthetic import chest_like
from ppad.synthesis import (
    SYNTHESIS_TASKS,
    AnatPaste,
    CutPaste,
    GaussianIntensityChange,
    RadialDeformation,
    get_synthesis,
)
from ppad.synthesis.poisson import laplacian, poisson_blend

SIZE = 128


@pytest.fixture(scope="module")
def chest():
    rng = np.random.default_rng(0)
    images = np.stack([chest_like(rng, SIZE)[0] for _ in range(4)])
    return images[0], images[1:]


WHOLE = np.ones((SIZE, SIZE), dtype=bool)
MAY_CHANGE_NOTHING = {"identity", "mediclip-train"}  # the latter draws identity a quarter of the time


@pytest.mark.parametrize("name", list(SYNTHESIS_TASKS))
def test_every_task_is_seeded_stays_in_range_and_changes_only_its_mask(chest, name):
    image, sources = chest
    region = np.zeros((SIZE, SIZE), dtype=bool)
    region[:, SIZE // 2 :] = True
    task = get_synthesis(name, sources=sources)
    a = task(image, region, np.random.default_rng(7))
    b = task(image, region, np.random.default_rng(7))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.image.dtype == np.float32 and a.image.min() >= 0 and a.image.max() <= 1
    np.testing.assert_array_equal(a.image[~a.mask], image[~a.mask])
    if name not in MAY_CHANGE_NOTHING:
        assert a.mask.any() and not np.array_equal(a.image, image)


def test_fpi_blend_factor_is_bounded_and_exact(chest):
    image, sources = chest
    result = get_synthesis("fpi", sources=sources[:1])(image, WHOLE, np.random.default_rng(3))
    alpha = result.params["alpha"]
    assert 0 <= alpha <= 1
    inside = result.mask
    np.testing.assert_allclose(
        result.image[inside], (1 - alpha) * image[inside] + alpha * sources[0][inside], atol=1e-6
    )
    # every changed pixel lies between the two images
    low, high = np.minimum(image, sources[0]), np.maximum(image, sources[0])
    assert np.all((result.image >= low - 1e-6) & (result.image <= high + 1e-6))


def test_poisson_blend_matches_source_gradients_inside_and_target_on_the_border():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:50] / 50
    target = 0.5 + 0.1 * np.sin(5 * xx) + 0.02 * rng.standard_normal((40, 50))
    source = 0.4 + 0.2 * np.cos(7 * yy) * np.sin(3 * xx)
    blended = poisson_blend(target, source, alpha=1.0)
    border = np.ones_like(target, dtype=bool)
    border[1:-1, 1:-1] = False
    np.testing.assert_allclose(blended[border], target[border])
    np.testing.assert_allclose(laplacian(blended), laplacian(source), atol=1e-9)
    half = poisson_blend(target, source, alpha=0.5)
    np.testing.assert_allclose(laplacian(half), 0.5 * laplacian(source) + 0.5 * laplacian(target), atol=1e-9)


def test_pii_keeps_the_target_outside_the_patch(chest):
    image, sources = chest
    result = get_synthesis("pii", sources=sources[:1])(image, WHOLE, np.random.default_rng(4))
    grown = ndimage.binary_dilation(result.mask)
    for axis in (0, 1):
        outside = ~grown
        np.testing.assert_array_equal(
            np.gradient(result.image, axis=axis)[outside], np.gradient(image, axis=axis)[outside]
        )


def test_cutpaste_pastes_an_exact_copy_of_a_box_of_the_image(chest):
    image, _ = chest
    result = CutPaste()(image, WHOLE, np.random.default_rng(5))
    rows, cols = np.nonzero(result.mask)
    patch = result.image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert result.mask.sum() == patch.size  # a full rectangle
    windows = np.lib.stride_tricks.sliding_window_view(image, patch.shape)
    assert np.any(np.all(windows == patch, axis=(2, 3)))  # it exists somewhere in the original


def test_scar_is_a_thin_rotated_strip(chest):
    image, _ = chest
    for seed in range(5):
        result = CutPaste(scar=True)(image, WHOLE, np.random.default_rng(seed))
        thickness = ndimage.distance_transform_edt(result.mask).max()
        assert thickness <= 16 * SIZE / 256 / 2 + 1.5


def test_anatpaste_changes_only_the_lung_fields(chest):
    image, _ = chest
    _, lungs = chest_like(np.random.default_rng(0), SIZE)
    task = AnatPaste(lungs=lambda film: lungs)
    for seed in range(5):
        result = task(image, WHOLE, np.random.default_rng(seed))
        assert result.mask.any() and not (result.mask & ~lungs).any()


def test_anatpaste_without_trusted_lungs_uses_the_whole_region(chest):
    image, _ = chest
    region = np.zeros((SIZE, SIZE), dtype=bool)
    region[:, : SIZE // 2] = True
    task = AnatPaste(lungs=lambda film: np.zeros(film.shape, dtype=bool))
    for seed in range(5):
        result = task(image, region, np.random.default_rng(seed))
        assert result.mask.any() and result.params["box"].mask(image.shape)[region].any()


def test_gaussian_intensity_change_is_a_centred_bump(chest):
    image = np.full((SIZE, SIZE), 0.5, dtype=np.float32)
    result = GaussianIntensityChange()(image, WHOLE, np.random.default_rng(2))
    change = result.image - image
    center = result.params["center"]
    assert np.abs(change).max() == pytest.approx(abs(result.params["amplitude"]), rel=1e-5)
    assert np.unravel_index(np.abs(change).argmax(), change.shape) == center
    profile = np.abs(change[center[0], center[1] :])
    assert np.all(np.diff(profile) <= 1e-7)  # decays away from the centre


@pytest.mark.parametrize("kind", ["source", "sink"])
def test_deformations_warp_without_new_intensities(chest, kind):
    image, _ = chest
    result = RadialDeformation(kind=kind)(image, WHOLE, np.random.default_rng(6))
    assert result.image.min() >= image.min() - 1e-6 and result.image.max() <= image.max() + 1e-6
    center = result.params["center"]
    assert result.image[center] == pytest.approx(image[center], abs=1e-6)  # the centre stays put
    assert (result.params["power"] > 1) == (kind == "source")
    rows, cols = np.nonzero(result.mask)
    assert np.hypot(rows - center[0], cols - center[1]).max() < result.params["radius"]


def test_identity_is_labelled_normal_and_sources_are_required(chest):
    from ppad.data.batches import synthesize_batch

    image, _ = chest
    batch = synthesize_batch(
        image[None].repeat(2, 0), WHOLE[None], get_synthesis("identity"), np.random.default_rng(0), labels=[1, 1]
    )
    assert batch.labels.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="needs source images"):
        get_synthesis("fpi")(image, WHOLE, np.random.default_rng(0))
