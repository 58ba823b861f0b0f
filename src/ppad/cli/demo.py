"""``ppad demo``: the whole pipeline offline, on generated radiographs and the tiny backbone."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ppad.backbones import TINY
from ppad.data import write_demo_dataset
from ppad.scoring import evaluate_run, format_metrics
from ppad.training import TrainSettings, train_run

DEMO_SHOTS = 32
DEMO_VALIDATION = 32


def run_demo(out: Path, epochs: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """Generate data, train, evaluate; returns the evaluation metrics."""
    start = time.perf_counter()
    data = write_demo_dataset(out / "data", n_train=DEMO_SHOTS + DEMO_VALIDATION, seed=seed)
    run_dir = out / "run"
    settings = TrainSettings(shots=DEMO_SHOTS, epochs=epochs, validation_size=DEMO_VALIDATION, seed=seed)
    manifest = train_run(data, run_dir, TINY, settings=settings, device="cpu", progress=progress)
    result, files = evaluate_run(run_dir, data, progress=progress)
    best = manifest["result"]
    click.echo(f"data: {data} ({manifest['data']['train_normals']} train normals, {len(result.labels)} test images)")
    click.echo(
        f"model kept: epoch {best['best_epoch']} of {epochs}, validation AUC {best['best_val_auc']:.3f} (held-out normals + SAS)"
    )
    click.echo(format_metrics(result.metrics))
    click.echo(f"files: {run_dir} (prompts, manifest) and {files['metrics'].parent} (metrics, scores)")
    click.echo(
        "note: the tiny backbone has random weights, so these numbers show that the pipeline runs end to end, "
        "not detection quality; train with --backbone CHEXZERO.pt for real results."
    )
    click.echo(f"done in {time.perf_counter() - start:.1f} s")
    return result.metrics
