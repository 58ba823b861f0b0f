"""``ppad train --val-abnormal``: real abnormal validation films join the run's validation split (refused
where they are also tested or trained on), and the fusion weight leaves equal shares only beyond noise."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ppad.data import discover, list_images, load_images
from ppad.data.fewshot import draw_few_shot
from ppad.data.layouts import LayoutError
from ppad.data.val_abnormal import ValidationOverlapError, find_real_abnormal
from ppad.errors import DataError
from ppad.methods.inference import predict_views
from ppad.methods.memory import FIXED_FUSION_WEIGHT, FUSION_WEIGHTS, choose_fusion_weight
from ppad.runs import RunConflictError, load_run
from ppad.training import TrainSettings, train_run
from tests.conftest import CXR_LITE_SCHEDULE, SHARED_DATA, needs_zhanglab, run_ppad, zhanglab_manifest

PNEUMONIA = SHARED_DATA / "zhanglab-original" / "val" / "pneumonia"  # 8 official validation films, not in test/
needs_pneumonia = pytest.mark.skipif(not PNEUMONIA.is_dir(), reason=f"real pneumonia films not found at {PNEUMONIA}")


def train_with(manifest, out, val_abnormal, *options):
    return run_ppad(
        "train", *options, "--data", manifest, "--out", out, "--val-abnormal", val_abnormal, *CXR_LITE_SCHEDULE
    )


@needs_zhanglab
def test_a_copy_of_a_test_film_is_refused_in_one_line(tmp_path):
    manifest = tmp_path / "films.csv"
    test = zhanglab_manifest(manifest, train_normals=24, test_per_class=2)
    film = next(item.path for item in test if item.label == 1)
    copy = tmp_path / "abnormal" / "renamed.jpeg"
    copy.parent.mkdir()
    shutil.copy(film, copy)  # another name, the same content
    done = train_with(manifest, tmp_path / "run", copy.parent, "--method", "knn")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    expected = f"error: --val-abnormal film {copy.resolve()} is also in the test split of --data (same content as {film.resolve()})"
    assert done.stderr.splitlines() == [f"{expected}; remove it"]
    assert not (tmp_path / "run").exists()  # refused before any work


@needs_zhanglab
@pytest.mark.parametrize(
    ("part", "where"), [("support", "in the support set"), ("validation", "among the held-out validation normals")]
)
def test_a_film_the_run_trains_or_holds_out_is_refused(backbone, tmp_path, part, where):
    manifest = tmp_path / "films.csv"
    zhanglab_manifest(manifest, train_normals=24)
    settings = TrainSettings(shots=16, validation_size=8, seed=0)
    film = getattr(draw_few_shot(discover(manifest).train_normals, 16, 8, seed=0), part)[3]
    listed = tmp_path / "abnormal.csv"
    listed.write_text(f"path,label\n{film},pneumonia\n")  # the same path, relabelled
    with pytest.raises(ValidationOverlapError) as refused:
        train_run(manifest, tmp_path / "run", backbone, settings=settings, progress=False, val_abnormal=listed)
    assert str(refused.value) == f"--val-abnormal film {film} is also {where}; remove it"
    assert not (tmp_path / "run").exists()


@needs_zhanglab
@needs_pneumonia
def test_a_fused_run_records_its_real_abnormal_films_and_the_fusion_weight_source(tmp_path):
    manifest, run = tmp_path / "films.csv", tmp_path / "run"
    zhanglab_manifest(manifest, train_normals=24)
    done = train_with(manifest, run, PNEUMONIA, "--method", "zeroshot+knn")
    assert done.returncode == 0, done.stderr
    record = json.loads((run / "manifest.json").read_text())
    films = list_images(PNEUMONIA)
    assert len(films) == 8 and record["split"]["val_abnormal"] == [str(f.resolve()) for f in films]
    real = record["validation"]["real_abnormal"]
    assert real["count"] == 8 and real["source"] == str(PNEUMONIA)
    assert real["sha256"] == sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in films)
    compared = "real abnormal validation films (8) vs held-out normals (8)"
    assert record["validation"]["chosen_on"] == compared and record["validation"]["synthetic_anomalies"] == 8
    calibration = record["result"]["calibration"]
    assert calibration["fusion_chosen_on"] == compared
    aucs = calibration["fusion_val_aucs"]
    assert (
        len(aucs) == len(FUSION_WEIGHTS) and calibration["fusion_val_auc"] == aucs[f"{calibration['fusion_weight']:g}"]
    )
    moved = calibration["fusion_gain"] > calibration["fusion_gain_se"]
    assert calibration["fusion_weight"] == (float(max(aucs, key=aucs.get)) if moved else FIXED_FUSION_WEIGHT)


@needs_zhanglab
@needs_pneumonia
def test_the_epoch_is_chosen_on_the_real_films_and_other_films_are_another_run(backbone, tmp_path):
    manifest, out = tmp_path / "films.csv", tmp_path / "run"
    zhanglab_manifest(manifest, train_normals=12)
    settings = TrainSettings(shots=6, epochs=2, batch_size=3, validation_size=6, seed=0)
    trained = train_run(manifest, out, backbone, settings=settings, progress=False, val_abnormal=PNEUMONIA)
    history = trained.result["history"]
    assert all({"val_auc", "val_auc_synthetic"} <= set(epoch) for epoch in history)
    model = load_run(out, backbone, checkpoint="last")
    normals = load_images([*map(str, trained.identity.split["validation"])], model.preprocessing, progress=False)
    real = load_images(list_images(PNEUMONIA), model.preprocessing, progress=False)
    scores = model.aggregate(predict_views(model, np.concatenate([normals.images, real.images])))
    on_real = roc_auc_score(np.r_[np.zeros(6), np.ones(8)], scores)
    assert history[-1]["val_auc"] == pytest.approx(on_real, abs=1e-6)  # normals vs the real films alone
    fewer = tmp_path / "fewer.csv"
    fewer.write_text("path,label\n" + "".join(f"{f},abnormal\n" for f in list_images(PNEUMONIA)[:4]))
    with pytest.raises(RunConflictError, match="different split"):
        train_run(manifest, out, backbone, settings=settings, progress=False, val_abnormal=fewer)


def test_no_films_and_normal_films_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no abnormal films found"):
        find_real_abnormal(tmp_path / "empty")
    (tmp_path / "mixed" / "normal").mkdir(parents=True)
    (tmp_path / "mixed" / "normal" / "a.png").write_bytes(b"not read")
    with pytest.raises(LayoutError, match="a normal class folder inside --val-abnormal"):
        find_real_abnormal(tmp_path / "mixed")
    listed = tmp_path / "list.csv"
    listed.write_text("path,label\na.png,normal\n")
    with pytest.raises(LayoutError, match="lists normal films"):
        find_real_abnormal(listed)


def fusion_case(prompt_signal: float, prompt_noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 validation films' labels, prompt and memory scores; the memory's signal is 1, its noise 1."""
    rng = np.random.default_rng(7)
    labels = np.repeat([0, 1], 20)
    return labels, prompt_signal * labels + prompt_noise * rng.normal(size=40), labels + rng.normal(size=40)


def test_a_fusion_gain_within_noise_keeps_equal_shares():
    labels, prompt, memory = fusion_case(1.0, 1.0)  # two equally informative parts
    chosen = choose_fusion_weight(labels, prompt, memory)
    aucs = {w: roc_auc_score(labels, w * prompt + (1 - w) * memory) for w in FUSION_WEIGHTS}
    assert max(aucs, key=aucs.get) != FIXED_FUSION_WEIGHT  # validation alone would have moved it…
    assert 0 < chosen["fusion_gain"] <= chosen["fusion_gain_se"]  # …by less than its noise
    assert chosen["fusion_weight"] == FIXED_FUSION_WEIGHT
    assert chosen["fusion_val_auc"] == pytest.approx(aucs[FIXED_FUSION_WEIGHT])


def test_a_clear_fusion_gain_moves_the_weight():
    labels, prompt, memory = fusion_case(0.0, 3.0)  # the prompt part is wide noise
    chosen = choose_fusion_weight(labels, prompt, memory)
    aucs = {w: roc_auc_score(labels, w * prompt + (1 - w) * memory) for w in FUSION_WEIGHTS}
    best = max(aucs, key=aucs.get)
    assert best < FIXED_FUSION_WEIGHT and chosen["fusion_weight"] == best
    assert chosen["fusion_gain"] == pytest.approx(aucs[best] - aucs[FIXED_FUSION_WEIGHT])
    assert chosen["fusion_gain"] > chosen["fusion_gain_se"] > 0
    assert chosen == choose_fusion_weight(labels, prompt, memory)  # seeded: the same record every time
