from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

import ppad.training.loop as loop
from ppad.backbones import get_architecture, load_backbone, save_openai_state_dict
from ppad.data import discover, load_images
from ppad.data.batches import validation_batch
from ppad.methods import PPADConfig, PPADModel
from ppad.methods.inference import predict_views
from ppad.runs import PROMPT_FILES, BackboneMismatchError, RunConflictError, RunFolder, load_run
from ppad.synthesis import get_synthesis
from ppad.training import TrainSettings, train_run

SMALL = TrainSettings(shots=8, epochs=3, batch_size=4, lr=0.01, validation_size=6, seed=1)


def test_prompts_learn_a_fixed_batch(backbone, demo_data):
    """Gradients, loss and optimiser are wired so that the prompts can fit labelled images."""
    torch.manual_seed(0)
    model = PPADModel(backbone, PPADConfig(n_ctx=4))
    index = discover(demo_data)
    items = index.test[:4] + index.test[-4:]
    images = load_images([i.path for i in items], model.preprocessing, progress=False).images
    x = model.preprocessing.normalize(torch.from_numpy(images))
    y = torch.tensor([float(i.label) for i in items])
    region = torch.arange(8) % len(model.regions)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(model(x, region), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < 0.85 * losses[0]  # broken gradients or loss wiring stay at ~1.0×


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data):
    run_dir = tmp_path_factory.mktemp("run") / "run"
    manifest = train_run(
        demo_data, run_dir, "tiny", settings=SMALL, config=PPADConfig(n_ctx=4), device="cpu", progress=False
    )
    return run_dir, manifest


def test_run_folder_holds_small_prompts_and_a_manifest(trained):
    run_dir, manifest = trained
    history = manifest.result["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    best = max(history, key=lambda h: h["val_auc"])  # first best wins ties
    assert manifest.result["best_epoch"] == best["epoch"]
    assert manifest.record["validation"]["normals"] == 6 and len(manifest.identity.split["support"]) == 8
    assert not set(manifest.identity.split["support"]) & set(manifest.identity.split["validation"])
    with safe_open(str(run_dir / PROMPT_FILES["best"]), framework="pt") as handle:
        assert set(handle.keys()) == {"text_prompt.ctx", "image_prompt.values"}
        assert handle.metadata()["fingerprint"] == load_backbone("tiny").fingerprint
    assert (run_dir / PROMPT_FILES["best"]).stat().st_size < 100_000  # prompts, not the backbone


def test_reloaded_run_scores_like_the_trained_prompts(trained, demo_data):
    run_dir, _ = trained
    model = load_run(run_dir, checkpoint="last")
    state = torch.load(RunFolder(run_dir).state_path, weights_only=True)
    for name, tensor in state["prompts"].items():
        torch.testing.assert_close(model.prompt_state_dict()[name], tensor)
    images = np.random.default_rng(0).random((2, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(
        predict_views(model, images), predict_views(load_run(run_dir, checkpoint="last"), images)
    )


def test_prompts_refuse_a_different_backbone(trained, tmp_path):
    run_dir, _ = trained
    other = save_openai_state_dict(get_architecture("tiny").build_random(seed=99), tmp_path / "other.pt")
    with pytest.raises(BackboneMismatchError, match="fingerprint"):
        load_run(run_dir, backbone=other)


def test_same_folder_with_other_settings_is_refused(trained, demo_data):
    run_dir, _ = trained
    changed = TrainSettings(**{**SMALL.to_dict(), "lr": 0.5})
    with pytest.raises(RunConflictError, match="settings"):
        train_run(
            demo_data, run_dir, "tiny", settings=changed, config=PPADConfig(n_ctx=4), device="cpu", progress=False
        )


def test_interrupted_training_resumes_to_the_same_prompts(backbone, demo_data, tmp_path, monkeypatch):
    index = discover(demo_data)
    settings = TrainSettings(shots=6, epochs=3, batch_size=3, lr=0.01, validation_size=4, seed=2)

    def fresh_model():
        torch.manual_seed(0)
        return PPADModel(backbone, PPADConfig(n_ctx=4))

    model = fresh_model()
    support = load_images(index.train_normals[:6], model.preprocessing, progress=False).images
    validation = validation_batch(
        load_images(index.train_normals[6:10], model.preprocessing, progress=False).images,
        model.regions.pixel_masks(224),
        get_synthesis("sas"),
        seed=2,
    )
    straight = loop.fit(model, support, validation, settings, RunFolder(tmp_path / "a"), progress=False)

    original = loop._validation_metrics
    calls = {"n": 0}

    def interrupt_in_third_epoch(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(loop, "_validation_metrics", interrupt_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        loop.fit(fresh_model(), support, validation, settings, RunFolder(tmp_path / "b"), progress=False)
    monkeypatch.setattr(loop, "_validation_metrics", original)
    resumed_model = fresh_model()
    resumed = loop.fit(resumed_model, support, validation, settings, RunFolder(tmp_path / "b"), progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    for a, b in zip(straight["history"], resumed["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for name, tensor in model.prompt_state_dict().items():
        torch.testing.assert_close(resumed_model.prompt_state_dict()[name], tensor, rtol=1e-5, atol=1e-6)


def test_same_seed_reproduces_a_run_exactly(demo_data, tmp_path):
    settings = TrainSettings(shots=6, epochs=1, batch_size=3, validation_size=4, seed=5)
    runs = [
        train_run(
            demo_data,
            tmp_path / name,
            "tiny",
            settings=settings,
            config=PPADConfig(n_ctx=4),
            device="cpu",
            progress=False,
        )
        for name in "ab"
    ]
    assert runs[0].identity.split == runs[1].identity.split
    # identical draws; CPU kernels may still sum in another order, hence the 1e-5 tolerance
    history = [run.result["history"][0] for run in runs]
    assert history[0]["loss"] == pytest.approx(history[1]["loss"], rel=1e-5)
    assert history[0]["val_auc"] == pytest.approx(history[1]["val_auc"], abs=1e-6)
    with (
        safe_open(str(tmp_path / "a" / PROMPT_FILES["best"]), framework="pt") as a,
        safe_open(str(tmp_path / "b" / PROMPT_FILES["best"]), framework="pt") as b,
    ):
        for key in a.keys():
            torch.testing.assert_close(a.get_tensor(key), b.get_tensor(key), rtol=1e-5, atol=1e-6)


def test_a_synthesis_that_changes_nothing_keeps_the_last_epoch(demo_data, tmp_path):
    settings = TrainSettings(shots=6, epochs=2, batch_size=3, validation_size=4, synthesis="identity")
    manifest = train_run(demo_data, tmp_path / "run", "tiny", settings=settings, device="cpu", progress=False)
    assert manifest.result["best_epoch"] == 2 and manifest.result["best_val_auc"] is None
    assert all("val_auc" not in record for record in manifest.result["history"])
    assert manifest.record["validation"]["synthetic_anomalies"] == 0


def test_a_run_written_before_a_setting_existed_still_resumes(trained, demo_data):
    """Settings added later (e.g. ``loss``) count as their defaults when missing from a manifest."""
    run_dir, _ = trained
    manifest = json.loads((run_dir / "manifest.json").read_text())
    del manifest["settings"]["loss"], manifest["model"]["prompt_init_std"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    again = train_run(
        demo_data, run_dir, "tiny", settings=SMALL, config=PPADConfig(n_ctx=4), device="cpu", progress=False
    )
    assert again.result is not None  # reused as finished, not refused
    with pytest.raises(RunConflictError, match="settings.loss"):
        other = TrainSettings(**{**SMALL.to_dict(), "loss": "two-sigmoid"})
        train_run(demo_data, run_dir, "tiny", settings=other, config=PPADConfig(n_ctx=4), device="cpu", progress=False)


@pytest.mark.parametrize(
    ("method", "label", "wrong"), [("ppad", "val_auc=", "val_auc_prompt="), ("ppad+knn", "val_auc_prompt=", "val_auc=")]
)
def test_the_progress_bars_name_what_they_validate_and_show_every_phase(
    demo_data, tmp_path, capsys, method, label, wrong
):
    """A fused method is validated on its prompt part during training: the bar says so."""
    settings = TrainSettings(shots=6, epochs=2, batch_size=3, validation_size=4, seed=1)
    manifest = train_run(demo_data, tmp_path / "run", "tiny", settings=settings, method=method, device="cpu")
    bars = capsys.readouterr().err
    final = [line for line in bars.replace("\r", "\n").splitlines() if line.startswith("training: 100%")][-1]
    assert f"{label}{manifest.result['history'][-1]['val_auc']:.4f}" in final and wrong not in final
    phases = ["loading backbone", "reading support set", "reading validation normals", "validating"]
    if method.endswith("+knn"):
        phases += ["memory: support normals", "memory: calibrating", "fusion weight"]
    assert all(phase in bars for phase in phases), [phase for phase in phases if phase not in bars]
