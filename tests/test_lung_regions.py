"""The ``lungs`` region set: each film's own lung fields as positions, synthesis placement and memory pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppad.backbones import FeatureCache
from ppad.backbones.dual_tower import pooled_unit
from ppad.lungs.postprocess import LungFields
from ppad.methods import PPADConfig, get_method
from ppad.methods.ppad import PPADModel
from ppad.regions import LUNG_REGIONS, PPAD_REGIONS, get_region_set
from ppad.regions.anatomy import film_region_masks, region_on_film
from ppad.synthesis import get_synthesis
from tests.conftest import ZHANGLAB, needs_zhanglab

SIZE = 224


def hand_lungs(trusted: bool = True) -> LungFields:
    """Two box-shaped lungs: the patient's right on the image's left (rows 40-179), the left on the
    image's right (rows 60-189); a reason marks them untrusted."""
    right, left = np.zeros((SIZE, SIZE), bool), np.zeros((SIZE, SIZE), bool)
    right[40:180, 30:100] = True
    left[60:190, 125:200] = True
    return LungFields(right, left, "" if trusted else "one lung field found (20% of the film)")


def test_every_anatomical_region_lies_inside_the_lung_fields():
    fields = hand_lungs()
    masks = dict(zip(LUNG_REGIONS.names, film_region_masks(LUNG_REGIONS, [fields])[0]))
    lungs = fields.mask
    for name, mask in masks.items():
        assert mask.any() and not (mask & ~lungs).any(), name
    np.testing.assert_array_equal(masks["left lung"], fields.lung_left)  # patient's left = image right
    np.testing.assert_array_equal(masks["right lung"], fields.lung_right)
    np.testing.assert_array_equal(masks[""], lungs)  # where whole-view anomalies go and the memory pools
    # upper/lower split at the middle of the lung fields' own height (rows 40-189 → row 115)
    np.testing.assert_array_equal(masks["upper lung"] | masks["lower lung"], lungs)
    assert np.flatnonzero(masks["upper lung"].any(axis=1)).max() == 114
    assert np.flatnonzero(masks["lower lung"].any(axis=1)).min() == 115


def test_an_untrusted_film_falls_back_to_the_halves_and_the_papers_split():
    masks = film_region_masks(LUNG_REGIONS, [hand_lungs(trusted=False)])[0]
    np.testing.assert_array_equal(masks, PPAD_REGIONS.pixel_masks(SIZE))


def test_image_sides_mirror_the_lung_fields_too():
    fields = hand_lungs()
    mirrored = get_region_set("lungs", sides="image")
    masks = dict(zip(mirrored.names, film_region_masks(mirrored, [fields])[0]))
    np.testing.assert_array_equal(masks["left lung"], fields.lung_right)  # image left, as the authors' code
    assert mirrored.per_film and not PPAD_REGIONS.per_film


@pytest.mark.parametrize("name", ["sas", "cutpaste", "gaussian-intensity", "source", "sink", "fpi"])
def test_synthetic_anomalies_are_centred_inside_the_chosen_lung_field(name):
    fields = hand_lungs()
    image = np.random.default_rng(0).random((SIZE, SIZE), dtype=np.float32) * 0.5 + 0.25
    sources = np.stack([image[::-1], image[:, ::-1]])
    task = get_synthesis(name, sources=sources)
    for seed in range(8):
        region = region_on_film(LUNG_REGIONS.regions[seed % 5], fields)
        result = task(image, region, np.random.default_rng(seed))
        if "center" in result.params:
            centre = result.params["center"]
        elif "box" in result.params:
            box = result.params["box"]
            centre = (box.top + box.height // 2, box.left + box.width // 2)
        else:  # SAS: the mask's own centre of mass lies inside the region (a blob drawn inside it)
            centre = tuple(int(c) for c in np.argwhere(result.mask).mean(axis=0).round())
        assert region[centre], (name, seed, centre)


def test_the_image_prompt_reads_each_films_own_masks(backbone):
    torch.manual_seed(0)
    lungs = PPADModel(backbone, PPADConfig(region_set="lungs")).eval()
    halves = PPADModel(backbone, PPADConfig(region_set="ppad")).eval()
    halves.load_state_dict(lungs.state_dict())
    images = torch.randn(2, 3, SIZE, SIZE)
    as_halves = torch.from_numpy(PPAD_REGIONS.pixel_masks(SIZE)).float().expand(2, -1, -1, -1)
    on_lungs = torch.from_numpy(film_region_masks(LUNG_REGIONS, [hand_lungs(), hand_lungs()])).float()
    with lungs.inference(), halves.inference():
        # masks equal to the halves score exactly as the halves model
        torch.testing.assert_close(lungs.view_probabilities(images, as_halves), halves.view_probabilities(images))
        on_fields = lungs.view_probabilities(images, on_lungs)
    assert (on_fields[:, :4] - halves.view_probabilities(images)[:, :4]).abs().max() > 1e-4
    keep = lungs.film_keep(on_lungs)
    assert keep.shape == (2, 5, 49, 1) and keep[:, -1].min() == 1  # the whole view masks nothing


def test_the_memory_pools_over_the_lung_fields_only():
    feature_map = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4) + 1
    pool = torch.zeros(1, 1, 8, 8)
    pool[..., :, :4] = 1  # the image's left half: map columns 0-1
    expected = torch.nn.functional.normalize(feature_map[..., :2].mean(dim=(2, 3)), dim=-1)
    torch.testing.assert_close(pooled_unit(feature_map, pool), expected)
    torch.testing.assert_close(pooled_unit(feature_map, torch.ones(1, 1, 8, 8)), pooled_unit(feature_map))


def test_the_feature_cache_keeps_pooled_and_unpooled_memories_apart(cxr_lite):
    cached = FeatureCache(cxr_lite)
    images = torch.randn(2, 3, SIZE, SIZE)
    pool = torch.zeros(2, 1, SIZE, SIZE)
    pool[..., 40:180, 30:200] = 1
    with torch.no_grad():
        whole, pooled = cached.memory_features(images), cached.memory_features(images, pool)
        again = cached.memory_features(images, pool)
    assert (whole - pooled).abs().max() > 1e-3
    torch.testing.assert_close(again, pooled, rtol=0, atol=0)
    assert cached.stats()["hits"] == 2 and cached.stats()["misses"] == 4


@needs_zhanglab
def test_real_films_get_their_lung_fields_and_knn_pools_inside_them(cxr_lite):
    from ppad.data import discover, load_images

    spec = get_method("knn")
    model = spec.build(cxr_lite, spec.config(region_set="lungs"))
    films = load_images(discover(ZHANGLAB).train_normals[:6], model.preprocessing, progress=False).images
    masks = model.region_masks(films)
    assert masks.shape == (6, 5, SIZE, SIZE)
    fields = model.film_lungs(films)
    assert sum(f.trusted for f in fields) >= 5
    for film, film_masks in zip(fields, masks):
        if film.trusted:
            assert not (film_masks & ~film.mask).any() and 0.1 < film.mask.mean() < 0.6
    model.prepare(films[:3])
    plain = get_method("knn").build(cxr_lite)
    plain.prepare(films[:3])
    with model.inference(), plain.inference():
        images = model.preprocessing.normalize(torch.from_numpy(films[3:]))
        assert not torch.allclose(model.view_probabilities(images), plain.view_probabilities(images))
