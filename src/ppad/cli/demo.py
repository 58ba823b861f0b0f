"""``ppad demo``: the whole pipeline offline, on generated radiographs and the shipped backbone."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ppad.choices import DEFAULT_BACKBONE
from ppad.cli.options import quiet_option
from ppad.cli.summaries import fusion_line, validation_text

DEMO_SHOTS = 32
DEMO_VALIDATION = 32


def run_demo(out: Path, epochs: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """Generate data, train, evaluate; returns the evaluation metrics."""
    from ppad.data import write_demo_dataset
    from ppad.methods import get_method
    from ppad.methods.defaults import default_detector
    from ppad.scoring import evaluate_run, format_metrics
    from ppad.training import TrainSettings, train_run

    start = time.perf_counter()
    data = write_demo_dataset(out / "data", n_train=DEMO_SHOTS + DEMO_VALIDATION, seed=seed)
    run_dir = out / "run"
    settings = TrainSettings(
        shots=DEMO_SHOTS, epochs=epochs, validation_size=DEMO_VALIDATION, seed=seed, val_every=epochs
    )
    default = default_detector(DEFAULT_BACKBONE)
    config = get_method(default.method).config(**default.overrides())
    manifest = train_run(
        data,
        run_dir,
        DEFAULT_BACKBONE,
        settings=settings,
        config=config,
        method=default.method,
        device="cpu",
        progress=progress,
    )
    result, files = evaluate_run(run_dir, data, progress=progress)
    best = manifest.result
    click.echo(
        f"data: {data} ({manifest.record['data']['train_normals']} train normals, {len(result.labels)} test images)"
    )
    click.echo(f"model: {default.describe()}")
    trained = f"epoch {best['best_epoch']} of {epochs}; " if best["history"] else "nothing to train; "
    click.echo(f"{trained}{validation_text(best)} on held-out normals + SAS")
    if "fusion_weight" in best["calibration"]:
        click.echo(fusion_line(best["calibration"]["fusion_weight"], best["calibration"].get("fusion_chosen_on")))
    click.echo(format_metrics(result.metrics))
    click.echo(f"files: {run_dir} (prompts, manifest) and {files['metrics'].parent} (metrics, scores, figures)")
    click.echo(
        f"note: generated films and the shipped {DEFAULT_BACKBONE} backbone; for real results train on your "
        "normals (--data) and read the README's ZhangLab table."
    )
    click.echo(f"done in {time.perf_counter() - start:.1f} s")
    return result.metrics


@click.command(name="demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("ppad-demo"),
    show_default=True,
    help="Folder for the data set and the run.",
)
@click.option(
    "--epochs", default=5, show_default=True, help="For a default method that trains (cxr-lite's patch-knn does not)."
)
@click.option("--seed", default=0, show_default=True)
@quiet_option
def command(out, epochs, seed, quiet) -> None:
    """The embedded default: generated radiographs, the shipped cxr-lite backbone, train → score → evaluate."""
    run_demo(out, epochs, seed, progress=not quiet)
