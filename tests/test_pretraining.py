"""CXR-CLIP pre-training: label texts, label-aware losses, and `ppad pretrain` on real films."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ppad.backbones import load_backbone
from ppad.pretraining import (
    FINDING_TEXTS,
    NORMAL_TEXTS,
    Film,
    films_digest,
    label_text,
    multi_positive_contrastive,
    normal_films,
    parse_findings,
    read_films,
    soft_targets,
)
from ppad.pretraining.losses import cxr_clip_loss
from tests.conftest import NIH, needs_nih, needs_zhanglab, zhanglab_manifest


def test_findings_become_texts_of_their_label_set():
    assert parse_findings("No Finding") == ()
    assert parse_findings("Pneumonia|Effusion") == ("Effusion", "Pneumonia")
    with pytest.raises(ValueError, match="unknown findings"):
        parse_findings("Pneumonia|Broken leg")
    rng = np.random.default_rng(0)
    assert {label_text((), rng) for _ in range(50)} <= set(NORMAL_TEXTS)
    texts = [label_text(("Effusion", "Pneumonia"), rng) for _ in range(200)]
    sentences = set(FINDING_TEXTS["Effusion"]) | set(FINDING_TEXTS["Pneumonia"])
    reports = [t for t in texts if t not in sentences]
    assert reports and all(any(s in t for s in FINDING_TEXTS["Pneumonia"][1:]) for t in reports)
    assert len({t.split(". ")[0] for t in reports}) > 1  # sentence order is shuffled


def test_identical_label_sets_are_not_negatives():
    groups = torch.tensor([0, 1, 0])
    targets = soft_targets(groups, groups)
    torch.testing.assert_close(targets[0], torch.tensor([0.5, 0.0, 0.5]))
    torch.manual_seed(0)
    a, b, scale = torch.randn(3, 4), torch.randn(3, 4), torch.tensor(7.0)
    logits = scale * torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
    expected = (
        -(targets * logits.log_softmax(1)).sum(1).mean() - (targets * logits.T.log_softmax(1)).sum(1).mean()
    ) / 2
    assert multi_positive_contrastive(a, b, groups, groups, scale).item() == pytest.approx(expected.item(), rel=1e-6)
    # with every film its own label set it is plain symmetric InfoNCE (CLIP's loss)
    index = torch.arange(3)
    clip = (torch.nn.functional.cross_entropy(logits, index) + torch.nn.functional.cross_entropy(logits.T, index)) / 2
    assert multi_positive_contrastive(a, b, index, index, scale).item() == pytest.approx(clip.item(), rel=1e-6)


def test_cxr_clip_loss_has_its_three_parts():
    torch.manual_seed(0)
    images = (torch.randn(4, 8, requires_grad=True), torch.randn(4, 8))
    texts = (torch.randn(4, 8), torch.randn(4, 8))
    parts = cxr_clip_loss(images, texts, torch.tensor([0, 0, 1, 2]), torch.tensor(5.0), icl_weight=0.5, tcl_weight=2)
    total = parts["clip"] + 0.5 * parts["icl"] + 2 * parts["tcl"]
    assert parts["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    parts["loss"].backward()
    assert images[0].grad.abs().sum() > 0


def _small_table(tmp_path, n_train=24, n_val=16):
    rows = list(csv.DictReader(open(NIH / "labels.csv")))
    val = [r for r in rows if r["split"] == "val"]
    normal = [r for r in val if r["findings"] == "No Finding"][: n_val // 2]
    picked = [r for r in rows if r["split"] == "train"][:n_train] + normal
    picked += [r for r in val if "Pneumonia" in r["findings"]][: n_val - len(normal)]
    picked += [r for r in rows if r["split"] == "test"][:3]
    for row in picked:
        row["image"] = str(NIH / row["image"])
    return _write_table(tmp_path / "labels.csv", picked)


def _write_table(table, rows):
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


def _pretrain(table, out, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ppad.cli.main", "pretrain", "--data", str(table), "--out", str(out)]
    return subprocess.run(
        [*command, *options, "--quiet", "--device", "cpu"], capture_output=True, text=True, timeout=600
    )


@needs_nih
def test_a_val_split_without_both_classes_is_a_clear_error(tmp_path):
    table = _small_table(tmp_path)
    rows = [r for r in csv.DictReader(open(table)) if not (r["split"] == "val" and "Pneumonia" in r["findings"])]
    done = _pretrain(_write_table(table, rows), tmp_path / "p", "--epochs", "1", "--views", "2")
    assert done.returncode == 2 and "needs films with Pneumonia" in done.stderr and "Traceback" not in done.stderr


@needs_nih
def test_test_split_films_are_never_read(tmp_path):
    films = read_films(_small_table(tmp_path))
    assert {f.split for f in films} == {"train", "val"} and len(films) == 40


@needs_nih
def test_pretrain_from_the_command_line_on_real_films(tmp_path):
    table = _small_table(tmp_path)
    out = tmp_path / "pre"
    options = ("--epochs", "6", "--batch-size", "8", "--views", "2")
    done = _pretrain(table, out, *options)
    assert done.returncode == 0, done.stderr
    assert "zero-shot AUC on val" in done.stdout
    record = json.loads((out / "backbone.json").read_text())
    losses = [epoch["loss"] for epoch in record["history"]]
    assert len(losses) == 6 and losses[-1] < losses[0]  # the loss falls on real films
    chosen = record["history"][record["best_epoch"] - 1]["val_zero_shot_auc"]
    assert record["validation"]["labels"] == pytest.approx(chosen["labels"])  # the saved weights are the chosen epoch's
    assert record["data"]["tables"][0]["train_films"] == 24 and record["data"]["tables"][0]["val_films"] == 16
    assert record["command"][1:3] == ["pretrain", "--data"] and len(record["data_sha256"]["labels"]) == 64
    backbone = load_backbone(out)
    assert backbone.fingerprint != load_backbone("cxr-lite").fingerprint
    # the same command again resumes: nothing is recomputed and the result is identical
    again = _pretrain(table, out, *options)
    assert again.returncode == 0, again.stderr
    assert load_backbone(out).fingerprint == backbone.fingerprint
    # other settings in the same folder are refused, naming them: the backbone there stays
    other = _pretrain(table, out, "--epochs", "7", "--batch-size", "8", "--views", "2")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert f"{out} holds a pre-training of other data or settings (settings.epochs differ)" in other.stderr
    assert load_backbone(out).fingerprint == backbone.fingerprint


@needs_nih
@needs_zhanglab
def test_pretrain_adds_a_detection_sets_training_normals_as_no_finding(tmp_path):
    manifest = tmp_path / "zhanglab.csv"
    test_items = zhanglab_manifest(manifest, train_normals=6, test_per_class=2)
    extra = normal_films(manifest)
    assert len(extra) == 6 and {(f.findings, f.split) for f in extra} == {((), "train")}
    assert not {f.path.resolve() for f in extra} & {item.path.resolve() for item in test_items}  # test films unread
    table = _small_table(tmp_path)
    out = tmp_path / "pre"
    done = _pretrain(table, out, "--normals", str(manifest), "--epochs", "2", "--batch-size", "8", "--views", "2")
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "backbone.json").read_text())
    tables = record["data"]["tables"]
    assert [t["train_films"] for t in tables] == [24, 6] and [t["val_films"] for t in tables] == [16, 0]
    assert tables[1]["source"] == str(manifest.resolve()) and tables[1]["name"] == "zhanglab"
    films = read_films(table)
    assert record["data_sha256"] == {"labels": films_digest(films), "zhanglab": films_digest(extra)}


@needs_nih
def test_pretrain_refuses_a_normals_set_without_normals(tmp_path):
    from PIL import Image

    folder = tmp_path / "only-abnormal"
    (folder / "abnormal").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "abnormal" / "a.png")
    done = _pretrain(_small_table(tmp_path), tmp_path / "out", "--normals", str(folder))
    assert done.returncode == 2 and "no training normals" in done.stderr and str(folder) in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


POOL = NIH.parent / "cxr-pool"
needs_pool = pytest.mark.skipif(not (POOL / "labels.csv").is_file(), reason=f"real cxr-pool films not found at {POOL}")


def test_a_covid_label_is_read_and_turned_into_its_own_texts(tmp_path):
    table = _write_table(
        tmp_path / "pool.csv",
        [
            {"image": "a.jpg", "findings": "COVID-19", "split": "train"},
            {"image": "b.jpg", "findings": "No Finding", "split": "val"},
        ],
    )
    films = read_films(table)
    assert [f.findings for f in films] == [("COVID-19",), ()] and {f.source for f in films} == {"pool"}
    texts = {label_text(("COVID-19",), np.random.default_rng(seed)) for seed in range(60)}
    assert texts <= set(FINDING_TEXTS["COVID-19"]) and len(texts) >= 4
    assert "pneumonia" not in texts and not texts & set(FINDING_TEXTS["Pneumonia"])  # not NIH's pneumonia


def test_epoch_draws_each_table_by_its_weight():
    from ppad.pretraining.loop import epoch_order

    sources = np.array([0] * 10 + [1] * 40)
    order = epoch_order(sources, [2.0, 0.25], np.random.default_rng(0))
    drawn = sources[order]
    assert int((drawn == 0).sum()) == 20 and int((drawn == 1).sum()) == 10
    assert np.bincount(order[order < 10], minlength=10).tolist() == [2] * 10  # every film twice, none thrice
    assert len(set(order[order >= 10].tolist())) == 10  # a quarter of the pool, no repeats


def _cache_of(folder, pooled, maps, groups, val_pooled, val_maps, val_labels, texts):
    """A cache on disk from tensors: training views [N, V, …], val films [M, …], texts [G, P, 2, W]."""
    from pathlib import Path

    from ppad.pretraining.data import Cache, Layout
    from ppad.pretraining.rows import RowFile

    def rows(name, array):
        array = np.ascontiguousarray(array)
        file = RowFile.create(folder / f"{name}.npy", len(array), array.shape[1:], array.dtype)
        file.write(0, array)
        return file

    n, views = pooled.shape[:2]
    films = [Film(Path(f"f{i}.png"), (), "train", source="nih") for i in range(n)]
    layout = Layout(
        train=films,
        val=films[: len(val_labels)],
        sources=["nih"],
        film_sources=np.zeros(n, dtype=np.int64),
        study_of=np.arange(n),
        study_texts=np.asarray(groups),
        study_sources=np.zeros(n, dtype=np.int64),
        text_keys=[("labels", ()), ("labels", ("Pneumonia",))],
        val_labels=np.asarray(val_labels),
        val_sources=np.zeros(len(val_labels), dtype=np.int64),
        mixed_text_studies=0,
    )
    return Cache(
        layout=layout,
        views=views,
        text_pairs=texts.shape[1],
        train_pooled=rows("train_pooled", pooled.flatten(0, 1).numpy()),
        train_maps=rows("train_maps", maps.flatten(0, 1).numpy()),
        val_pooled=rows("val_pooled", val_pooled.numpy()),
        val_maps=rows("val_maps", val_maps.numpy()),
        texts=rows("texts", texts.flatten(0, 1).numpy()),
        film_ok=np.ones(n, dtype=bool),
        val_ok=np.ones(len(val_labels), dtype=bool),
    )


def test_a_pretraining_epoch_moves_the_tail_and_nothing_frozen(tmp_path):
    from ppad.backbones import DualTowerBackbone, DualTowerSpec
    from ppad.pretraining import PretrainSettings
    from ppad.pretraining.loop import _train

    backbone = DualTowerBackbone(DualTowerSpec(trained_stages=1))
    torch.manual_seed(0)
    images = torch.rand(6, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        pooled, maps = backbone.front_features(images)
        # the cached front + the tail is exactly the inference path's head input
        whole = torch.cat([pooled, backbone.tail_features(maps.contiguous())], dim=-1)
        torch.testing.assert_close(whole, backbone.image_head_inputs(images), rtol=1e-4, atol=1e-5)
    views = (torch.stack([pooled, pooled.flip(0)], 1), torch.stack([maps, maps.flip(0)], 1).half())
    labels = [0, 1, 0, 1, 0, 1]
    texts = torch.randn(2, 3, 2, backbone.text_width)
    cache = _cache_of(tmp_path, *views, labels, pooled, maps.half(), labels, texts)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    settings = PretrainSettings(epochs=1, batch_size=6, views=2, text_pairs=3, lr=1e-2, tower_lr=1e-2)
    history, best = _train(backbone, cache, settings, {"test": 1}, tmp_path / "state.pt", progress=False)
    changed = {k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])}
    tail = ("image_tower.blocks.6.", "image_tower.conv_head.", "image_tower.bn2.weight", "image_tower.bn2.bias")
    assert any(k.startswith("image_tower.blocks.6.") for k in changed) and "image_tower.conv_head.weight" in changed
    assert {k for k in changed if k.startswith(("image_tower.", "text_tower."))} <= {
        k for k in changed if k.startswith(tail)
    }  # nothing before the tail, nothing of the text tower, no batch-norm statistics
    assert not any(k.startswith("folded_image_tower.") for k in backbone.state_dict())
    assert set(best["learned"]) == set(backbone.learned_state_dict()) and history[0]["seconds"] >= 0


@needs_nih
@needs_pool
def test_pretrain_on_two_tables_from_the_command_line(tmp_path):
    nih = _small_table(tmp_path, n_train=16, n_val=12)
    rows = list(csv.DictReader(open(POOL / "labels.csv")))
    picked = [r for r in rows if r["split"] == "train"][:8] + [r for r in rows if r["split"] == "train"][-8:]
    val = [r for r in rows if r["split"] == "val"]
    for finding in ("COVID-19", "No Finding"):
        picked += [r for r in val if r["findings"] == finding][:4]
    for row in picked:
        row["image"] = str(POOL / row["image"])
    (tmp_path / "pool").mkdir()
    pool = _write_table(tmp_path / "pool" / "pool.csv", picked)
    out = tmp_path / "pre"
    command = [sys.executable, "-m", "ppad.cli.main", "pretrain", "--data", str(nih), "--data", str(pool)]
    options = ["--source-weights", "2,0.5", "--epochs", "2", "--batch-size", "8", "--views", "2", "--quiet"]
    done = subprocess.run([*command, *options, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "labels: words" in done.stdout and "pool: words" in done.stdout
    record = json.loads((out / "backbone.json").read_text())
    tables = {t["name"]: t for t in record["data"]["tables"]}
    assert tables["labels"]["train_films"] == 16 and tables["pool"]["train_films"] == 16
    assert tables["labels"]["weight"] == 2.0 and tables["pool"]["weight"] == 0.5
    assert set(record["data_sha256"]) == {"labels", "pool"} and set(record["validation"]) == {"labels", "pool"}
    assert record["selection"].endswith("on labels's val split") and record["spec"]["trained_stages"] == 1
    assert record["history"][0]["val_zero_shot_auc"]["pool"]["words"] >= 0
    assert {("COVID-19",), ()} <= {tuple(f.findings) for f in read_films(pool)}
    backbone = load_backbone(out)
    wheel = load_backbone("cxr-lite")  # heads only: its tower is the wheel's
    assert not torch.equal(backbone.image_tower.conv_head.weight, wheel.image_tower.conv_head.weight)
    assert torch.equal(backbone.image_tower.blocks[5][0].conv_pw.weight, wheel.image_tower.blocks[5][0].conv_pw.weight)
