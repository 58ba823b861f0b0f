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
    assert record["validation"] == pytest.approx(chosen)  # the saved heads are the chosen epoch's
    assert record["data"]["train_films"] == 24 and record["data"]["val_films"] == 16
    assert record["command"][1:3] == ["pretrain", "--data"] and len(record["data_sha256"]) == 64
    backbone = load_backbone(out)
    assert backbone.fingerprint != load_backbone("cxr-lite").fingerprint
    # the same command again resumes: nothing is recomputed and the result is identical
    again = _pretrain(table, out, *options)
    assert again.returncode == 0, again.stderr
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
    assert record["data"]["train_films"] == 24 + 6 and record["data"]["val_films"] == 16
    assert record["data"]["normals"] == {"source": str(manifest.resolve()), "films": 6}
    films = read_films(table)
    assert record["data_sha256"] == films_digest(films + extra) != films_digest(films)


@needs_nih
def test_pretrain_refuses_a_normals_set_without_normals(tmp_path):
    from PIL import Image

    folder = tmp_path / "only-abnormal"
    (folder / "abnormal").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "abnormal" / "a.png")
    done = _pretrain(_small_table(tmp_path), tmp_path / "out", "--normals", str(folder))
    assert done.returncode == 2 and "no training normals" in done.stderr and str(folder) in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
