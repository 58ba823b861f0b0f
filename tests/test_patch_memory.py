"""The patch memory (``patch-knn``): its pieces on toy tensors, a blob on real films, trained runs, and the
command line from training to scoring with the exported graph."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from scipy.ndimage import distance_transform_edt

from ppad.data import discover, load_images
from ppad.errors import SettingsError
from ppad.export.onnx import PARITY_TOLERANCE
from ppad.export.runtime import segmenter_path, sidecar_path
from ppad.maps import anomaly_maps
from ppad.maps.lungs import segment_lungs
from ppad.methods import get_method
from ppad.methods.memory import NORMAL_QUANTILE
from ppad.methods.patch_memory import (
    PatchKnnConfig,
    PatchKnnModel,
    PatchMemory,
    greedy_coreset,
    inside_patches,
    top_k_mean,
)
from ppad.runs import PROMPT_FILES, RunConflictError, load_run
from ppad.training import TrainSettings, train_run
from tests.conftest import ZHANGLAB, needs_zhanglab
from tests.conftest import run_ppad as ppad


def unit_rows(rows: int, width: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, width, generator=torch.Generator().manual_seed(seed)), dim=1)


def covering_radius(features: torch.Tensor, chosen: torch.Tensor) -> float:
    """The k-centre objective: the largest cosine distance of a row to its nearest chosen row."""
    return float((1 - features @ features[chosen].T).amin(dim=1).max())


# --- the pieces --------------------------------------------------------------------------------
def test_greedy_coreset_keeps_every_row_when_there_are_no_more_than_its_size():
    features = unit_rows(6, 4, seed=0)
    assert torch.equal(greedy_coreset(features, 6), torch.arange(6))
    assert torch.equal(greedy_coreset(features, 100), torch.arange(6))


def test_greedy_coreset_covers_clusters_better_than_random_rows():
    """Eight tight clusters of very different sizes: greedy k-centre takes a row of each, so its covering radius
    is the clusters' own spread; random rows miss the small clusters."""
    generator = torch.Generator().manual_seed(1)
    centres = F.normalize(torch.randn(8, 16, generator=generator), dim=1)
    sizes = torch.tensor([150, 80, 40, 20, 10, 5, 3, 2])
    labels = torch.repeat_interleave(torch.arange(8), sizes)
    features = F.normalize(centres[labels] + 0.05 * torch.randn(len(labels), 16, generator=generator), dim=1)

    chosen = greedy_coreset(features, 8, seed=3)
    assert len(set(chosen.tolist())) == 8 and sorted(labels[chosen].tolist()) == list(range(8))
    radius = covering_radius(features, chosen)
    random_radii = [covering_radius(features, torch.randperm(len(labels), generator=generator)[:8]) for _ in range(20)]
    assert radius <= min(random_radii) and radius < 0.1, (radius, min(random_radii))
    more = greedy_coreset(features, 60, seed=3)
    assert len(set(more.tolist())) == 60 and torch.equal(more[:8], chosen)  # greedy: a longer run extends a shorter


def test_top_k_mean_averages_the_highest_scores_inside_only():
    scores = torch.tensor([[0.1, 0.9, 0.4, 0.7, 2.0], [0.3, 0.8, 0.5, 0.6, 1.5]])
    inside = torch.tensor([[True, True, True, True, False], [False, True, False, False, False]])
    expected = {1: [0.9, 0.8], 2: [0.8, 0.8], 3: [(0.9 + 0.7 + 0.4) / 3, 0.8], 10: [0.525, 0.8]}
    for k, means in expected.items():  # the outside 2.0 and 1.5 never count; a short row averages what is inside
        torch.testing.assert_close(top_k_mean(scores, inside, k), torch.tensor(means))

    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 50, generator=generator)
    inside = torch.rand(6, 50, generator=generator) < 0.3
    inside[:, 0] = True
    torch.testing.assert_close(top_k_mean(scores, inside, 1), scores.masked_fill(~inside, -1).amax(dim=1))


def test_inside_patches_marks_the_locations_a_mask_covers():
    masks = torch.zeros(2, 1, 224, 224)
    masks[0, :, :, :112] = 1  # the left half; the second film has nothing inside
    inside = inside_patches(masks, (28, 28), 2)
    assert inside.shape == (2, 28 * 28)
    left = torch.zeros(28, 28, dtype=torch.bool)
    left[:, :14] = True
    assert torch.equal(inside[0].reshape(28, 28), left)
    assert inside[1].all()  # an all-zero mask keeps every location
    coarse = inside_patches(masks[:1], (7, 7), 1).reshape(7, 7)  # column 3 lies half inside: at least half counts
    assert coarse[:, :4].all() and not coarse[:, 4:].any()
    assert inside_patches(None, (7, 7), 3).shape == (3, 49) and inside_patches(None, (7, 7), 3).all()


def test_leave_one_out_scores_each_support_film_against_the_other_films():
    films = [unit_rows(rows, 8, seed) for seed, rows in enumerate((5, 7, 6, 4))]
    memory = PatchMemory(PatchKnnConfig(top_k=3))
    assert memory.fill(films) == {"support_patches": 22, "bank_patches": 22}
    for index, film in enumerate(films):
        others = torch.cat([other for j, other in enumerate(films) if j != index])
        nearest = 1 - (film @ others.T).amax(dim=1)
        assert float(memory.leave_one_out[index]) == pytest.approx(float(nearest.topk(3).values.mean()), abs=1e-6)

    set_by = memory.calibrate_on(None)
    own = memory.leave_one_out.numpy()
    assert set_by["memory_q95"] == pytest.approx(float(np.quantile(own, NORMAL_QUANTILE)), abs=1e-6)
    assert set_by["memory_scale"] == pytest.approx(float(own.std()), abs=1e-6)
    assert "4 support normals, leave-one-out" in set_by["calibrated_on"]
    held_out = torch.tensor([0.2, 0.4, 0.3])
    assert "3 held-out validation normals" in memory.calibrate_on(held_out)["calibrated_on"]
    q = float(np.quantile(held_out.numpy(), NORMAL_QUANTILE))
    torch.testing.assert_close(memory.calibration, torch.tensor([q, float(held_out.numpy().std())]))
    assert float(memory.probability(torch.tensor(q))) == pytest.approx(0.5)


def test_one_support_film_without_held_out_normals_cannot_be_calibrated(backbone):
    memory = PatchMemory(PatchKnnConfig())
    memory.fill([unit_rows(4, 8, seed=0)])
    assert len(memory.leave_one_out) == 0
    for held_out in (None, torch.tensor([0.3])):  # one held-out normal is not enough either
        with pytest.raises(SettingsError, match="cannot be calibrated: give it two held-out normals"):
            memory.calibrate_on(held_out)
    empty = get_method("patch-knn").build(backbone)
    images = torch.zeros(1, 3, 224, 224)
    for score in (empty.film_scores, empty.patch_scores):  # the score and the map say what is missing
        with pytest.raises(ValueError, match="the patch memory is empty: train the run"):
            score(images)


# --- a bright blob in the lung fields of real films -------------------------------------------
BLOB_SIGMA = 12.0  # pixels of the 224-px frame


@dataclass(frozen=True)
class Blobs:
    """Real normal films and the same films with a bright Gaussian blob deep inside one lung field."""

    model: PatchKnnModel
    films: np.ndarray  # [n, S, S]
    blobbed: np.ndarray  # [2n, S, S]: each film's left lung field, then each film's right one
    centres: list[tuple[int, int]]
    lungs: np.ndarray  # [2n, S, S] the films' lung fields, in the order of ``blobbed``


@pytest.fixture(scope="module")
def blobs(cxr_lite) -> Blobs:
    """The shipped backbone's patch memory of 8 real ZhangLab train normals; 4 test normals, each blobbed twice
    (the point of each lung field farthest from its edge)."""
    model = get_method("patch-knn").build(cxr_lite).eval()
    index = discover(ZHANGLAB)
    model.prepare(load_images(index.train_normals[:8], model.preprocessing, progress=False).images)
    normals = [item.path for item in index.test if not item.label][:4]
    films = load_images(normals, model.preprocessing, progress=False).images
    fields = segment_lungs(films)
    assert all(field.trusted for field in fields)
    rows, columns = np.mgrid[: films.shape[1], : films.shape[2]]
    blobbed, centres, lungs = [], [], []
    for side in ("lung_left", "lung_right"):
        for film, field in zip(films, fields):
            y, x = np.unravel_index(distance_transform_edt(getattr(field, side)).argmax(), field.mask.shape)
            blob = 0.6 * np.exp(-((rows - y) ** 2 + (columns - x) ** 2) / (2 * BLOB_SIGMA**2))
            blobbed.append(np.clip(film + blob, 0, 1).astype(np.float32))
            centres.append((int(y), int(x)))
            lungs.append(field.mask)
    return Blobs(model, films, np.stack(blobbed), centres, np.stack(lungs))


def film_scores(model: PatchKnnModel, films: np.ndarray) -> np.ndarray:
    with model.inference():
        return model.film_scores(model.preprocessing.normalize(torch.from_numpy(films))).numpy()


@needs_zhanglab
def test_a_bright_blob_in_the_lungs_raises_the_film_score(blobs):
    plain = np.tile(film_scores(blobs.model, blobs.films), 2)
    blobbed = film_scores(blobs.model, blobs.blobbed)
    assert (blobbed > plain).all(), np.c_[plain, blobbed]


@needs_zhanglab
def test_the_patches_map_is_brightest_at_the_blob(blobs):
    """Inside the blob: within 2σ of its centre. On every film the map is brighter there than in the rest of
    the lung fields, and its peak lands there at least three times as often as chance (the share of the lung
    fields that disc covers, where the lung-restricted map's maximum lies). Measured: the peak sits about
    10 px below and right of the centre (the stride-8 and 16 stages' receptive fields are centred above and
    left of where upsampling puts them), and with the default window of 1 it lands in the disc on 3 of 8
    films (7 of 8 with a 3 × 3 window)."""
    maps = anomaly_maps(blobs.model, blobs.blobbed, "patches")
    rows, columns = np.mgrid[: maps.shape[1], : maps.shape[2]]
    hits, chance, brighter = [], [], []
    for amap, (y, x), lungs in zip(maps, blobs.centres, blobs.lungs):
        disc = np.hypot(rows - y, columns - x) <= 2 * BLOB_SIGMA
        hits.append(bool(disc.flat[amap.argmax()]))
        chance.append((disc & lungs).sum() / lungs.sum())
        brighter.append(amap[disc & lungs].mean() > amap[lungs & ~disc].mean())
    assert all(brighter), brighter
    assert np.mean(chance) < 0.15 and np.mean(hits) >= 3 * np.mean(chance), (hits, chance)


# --- trained runs ------------------------------------------------------------------------------
def test_a_coreset_smaller_than_the_support_is_saved_loaded_and_reused(backbone, demo_data, tmp_path):
    """The bank is min(bank_size, support patches in the lung fields) rows; a run loads whatever its bank holds
    (the default model's bank is empty), and the same command again is a no-op, another setting a conflict."""

    def train(bank_size: int):
        settings = TrainSettings(shots=4, epochs=1, batch_size=4, validation_size=4, seed=0)
        config = PatchKnnConfig(bank_size=bank_size)
        return train_run(
            demo_data, tmp_path, backbone, settings=settings, config=config, method="patch-knn", progress=False
        )

    manifest = train(20)
    calibration = manifest.result["calibration"]
    assert calibration["support_patches"] > 20 and calibration["bank_patches"] == 20
    model = load_run(tmp_path, backbone)
    assert model.config.bank_size == 20 and model.memory.bank.shape == (20, 128)
    stored = load_file(str(tmp_path / PROMPT_FILES["best"]))
    torch.testing.assert_close(model.memory.bank, stored["memory.bank"], rtol=0, atol=0)

    before = {name: (tmp_path / name).stat().st_mtime_ns for name in PROMPT_FILES.values()}
    train(20)
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in PROMPT_FILES.values()} == before
    with pytest.raises(RunConflictError, match="different model.bank_size"):
        train(10)


def test_the_shared_run_keeps_every_support_patch_in_the_lung_fields(zhanglab_patch_run):
    """16 shots on cxr-lite's stride-8 grid give fewer in-lung patches than the default bank size: all kept."""
    model = load_run(zhanglab_patch_run.run)
    manifest = json.loads((zhanglab_patch_run.run / "manifest.json").read_text())
    support = load_images(manifest["split"]["support"], model.preprocessing, progress=False).images
    with model.inference():
        _, inside = model.patches_and_inside(model.preprocessing.normalize(torch.from_numpy(support)))
    in_lungs = int(inside.sum())
    assert in_lungs < inside.numel() and len(model.memory.bank) == min(PatchKnnConfig().bank_size, in_lungs)
    calibration = manifest["result"]["calibration"]
    assert calibration["support_patches"] == calibration["bank_patches"] == in_lungs
    assert calibration["calibrated_on"] == "patch memory: 8 held-out validation normals"


# --- the command line on real films -----------------------------------------------------------
def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_evaluate_map_export_and_score_with_onnx(zhanglab_patch_run, tmp_path):
    """The session's shared run of the default (``ppad train`` with no ``--method``: patch-knn, trained and
    evaluated by its fixture), then maps, export and onnx scores on its test films, equal to PyTorch's (the
    evaluation's) within the export's tolerance."""
    shared = zhanglab_patch_run
    assert shared.trained.stdout.startswith("method: patch-knn (region_set lungs, layers 2,3, window 1, top_k 50): ")
    assert "cxr-lite's validated default (benchmarks/select_defaults.py" in shared.trained.stdout
    config = json.loads((shared.run / "config.json").read_text())
    assert config["method"] == "patch-knn" and config["model"]["region_set"] == "lungs"
    metrics = json.loads((shared.run / "evaluation" / "metrics.json").read_text())["metrics"]
    assert metrics["n_normal"] == metrics["n_abnormal"] == 10 and 0 <= metrics["auc"] <= 1
    evaluated = {Path(row["path"]).resolve(): row for row in read_rows(shared.run / "evaluation" / "scores.csv")}

    films = [shared.test[0].path, shared.test[-1].path]  # a normal film and a pneumonia
    maps = tmp_path / "maps"
    done = ppad("score", "--run", shared.run, *films, "--maps", maps, "--out", tmp_path / "m.csv", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "maps of 2 films (patches;" in done.stdout  # what auto drew, by name
    index = read_rows(maps / "maps.csv")
    assert [row["path"] for row in index] == [str(film) for film in films]
    assert {row["map_method"] for row in index} == {"patches"} and "map patches" in index[0]["producer"]
    for row in index:
        amap = np.load(maps / row["map"])
        assert amap.ndim == 2 and np.isfinite(amap).all() and amap.std() > 0 and (maps / row["overlay"]).is_file()
        assert abs(float(row["score"]) - float(evaluated[Path(row["path"]).resolve()]["score"])) <= PARITY_TOLERANCE

    model = tmp_path / "model.onnx"
    done = ppad("export", "--run", shared.run, "--out", model)
    assert done.returncode == 0, done.stderr
    sidecar = json.loads(sidecar_path(model).read_text())
    assert sidecar["method"] == "patch-knn" and sidecar["view_names"] == ["patch memory"]
    assert sidecar["parity"]["real_films"] and sidecar["parity"]["same_decisions"] and segmenter_path(model).is_file()

    films = [item.path for item in shared.test[:2] + shared.test[-2:]]
    done = ppad("score", "--onnx", model, *films, "--out", tmp_path / "onnx.csv", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = read_rows(tmp_path / "onnx.csv")
    assert [row["path"] for row in rows] == [str(film) for film in films]
    for row in rows:
        reference = evaluated[Path(row["path"]).resolve()]
        assert row["lung_fields"] and row["prediction"] == reference["prediction"]
        for column in ("score", "p_patch_memory"):
            assert abs(float(row[column]) - float(reference[column])) <= PARITY_TOLERANCE, (row["path"], column)
