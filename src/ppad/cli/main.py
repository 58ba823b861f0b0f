"""The ``ppad`` command line: train, score, evaluate, demo."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import numpy as np

from ppad.backbones import CheckpointError
from ppad.backbones.preprocessing import RESIZE_MODES, Preprocessing
from ppad.bench import ABLATIONS, run_bench
from ppad.cli.options import (
    backbone_options,
    data_option,
    device_option,
    quiet_option,
    schedule_options,
    trained_run_options,
)
from ppad.data import ImageReadError, LayoutError, list_images, read_image
from ppad.data.synthetic import chest_like
from ppad.methods import METHODS, BackboneMismatchError, get_method, load_run
from ppad.methods.checkpoint import PROMPT_FILES
from ppad.methods.zeroshot import TEMPLATES
from ppad.scoring import evaluate_run, format_metrics, score_files
from ppad.synthesis import SYNTHESIS_TASKS, get_synthesis
from ppad.synthesis.preview import write_synthesis_grid
from ppad.training import RunConflictError, TrainSettings, resolve_device, train_run

USER_ERRORS = (
    CheckpointError,
    ImageReadError,
    LayoutError,
    BackboneMismatchError,
    RunConflictError,
    FileNotFoundError,
    ValueError,
    KeyError,
)


def _run_safely(action):
    """Turn expected user errors into one clear line and exit code 2, never a traceback."""
    try:
        return action()
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        click.echo(f"error: {message}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ppad")
def cli() -> None:
    """Few-shot anomaly detection in chest X-rays with position-guided CLIP prompts (PPAD)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")


@cli.command()
@click.option("--method", type=click.Choice(list(METHODS)), default="ppad", show_default=True, help="Detection method.")
@backbone_options
@data_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder to create (or resume).")
@schedule_options
@click.option("--seed", default=0, show_default=True, help="Seeds the support draw, regions and anomalies.")
@click.option("--n-ctx", type=int, default=None, help="Learnable context vectors [method default: 16; MaPLe 2].")
@click.option("--class-specific", is_flag=True, help="One context per class instead of a shared one.")
@click.option("--classes", default="normal,pneumonia", show_default=True, help="normal,abnormal class words.")
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default=None,
    help="zeroshot prompts: the class words, or CheXzero's 'no {abnormal}' / '{abnormal}'.",
)
@click.option(
    "--synthesis",
    type=click.Choice(list(SYNTHESIS_TASKS)),
    default="sas",
    show_default=True,
    help="Anomaly synthesis for training and validation.",
)
@click.option("--image-size", default=224, show_default=True)
@click.option(
    "--resize", type=click.Choice(RESIZE_MODES), default="pad", show_default=True, help="Pad to square or centre-crop."
)
@device_option
@quiet_option
def train(
    method,
    backbone,
    arch,
    data,
    out,
    shots,
    epochs,
    batch_size,
    lr,
    val_every,
    val_size,
    seed,
    n_ctx,
    class_specific,
    classes,
    template,
    synthesis,
    image_size,
    resize,
    device,
    quiet,
) -> None:
    """Learn prompts from k normal images (resumes an interrupted run in --out)."""
    words = tuple(word.strip() for word in classes.split(","))
    settings = TrainSettings(
        shots=shots,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        validation_size=val_size,
        val_every=val_every,
        seed=seed,
        synthesis=synthesis,
    )
    config = get_method(method).config(
        classes=words,
        n_ctx=n_ctx,
        class_specific=class_specific or None,
        template=template,
        image_size=image_size,
        resize_mode=resize,
    )
    manifest = _run_safely(
        lambda: train_run(data, out, backbone, arch, settings, config, method, device, progress=not quiet)
    )
    result = manifest["result"]
    best = result["best_val_auc"]
    validation = f"validation AUC {best:.3f}" if best is not None else "no validation split"
    if not result["history"]:
        click.echo(f"{out}: {method} has nothing to train ({validation}); ready for score/evaluate")
    else:
        kept = f"epoch {result['best_epoch']}" if best is not None else "the last epoch"
        click.echo(f"trained {out}: kept {kept} ({validation}); prompts in {out / PROMPT_FILES['best']}")


def _expand_inputs(inputs: tuple[Path, ...]) -> list[Path]:
    paths: list[Path] = []
    for item in inputs:
        paths.extend(list_images(item) if item.is_dir() else [item])
    return paths


@cli.command()
@trained_run_options
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="CSV (and .json beside it); default RUN/scores.csv."
)
@device_option
@quiet_option
def score(run_dir, backbone, checkpoint, batch_size, images, out, device, quiet) -> None:
    """Score image files or folders: one row per image, a column per view."""

    def action() -> None:
        model = load_run(run_dir, backbone, checkpoint, resolve_device(device))
        report = score_files(model, _expand_inputs(images), batch_size, progress=not quiet)
        csv_path = out or run_dir / "scores.csv"
        report.write_csv(csv_path)
        report.write_json(csv_path.with_suffix(".json"))
        for failure in report.failures:
            click.echo(f"skipped: {failure}", err=True)
        click.echo(f"scored {len(report.paths)} images ({len(report.failures)} unreadable) → {csv_path}")

    _run_safely(action)


@cli.command(name="evaluate")
@trained_run_options
@data_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for metrics.json and scores; default RUN/evaluation.",
)
@click.option("--bootstrap", default=1000, show_default=True, help="Bootstrap resamples for the AUC's 95% CI.")
@device_option
@quiet_option
def evaluate_command(run_dir, backbone, checkpoint, batch_size, data, out, bootstrap, device, quiet) -> None:
    """Metrics on the test split (files the run trained or validated on are left out)."""

    def action() -> None:
        result, files = evaluate_run(
            run_dir, data, out, backbone, checkpoint, resolve_device(device), batch_size, bootstrap, not quiet, sys.argv
        )
        click.echo(format_metrics(result.metrics))
        if result.excluded:
            click.echo(f"left out {len(result.excluded)} test images the run trained or validated on")
        click.echo(f"metrics → {files['metrics']}")

    _run_safely(action)


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@cli.command()
@data_option
@backbone_options
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bench folder (finished cells are reused).")
@click.option(
    "--methods", default="zeroshot,coop,ppad", show_default=True, help=f"Comma-separated, of: {', '.join(METHODS)}."
)
@click.option("--seeds", default="0,1,2,3,4", show_default=True)
@click.option("--synthesis", default="sas", show_default=True, help="Comma-separated synthesis names (one row each).")
@click.option(
    "--ablation",
    type=click.Choice(sorted(ABLATIONS)),
    default=None,
    help="Table 3 (prompts) or Table 4 (synthesis) rows; overrides --methods/--synthesis.",
)
@schedule_options
@device_option
@quiet_option
def bench(
    data,
    backbone,
    arch,
    out,
    methods,
    seeds,
    synthesis,
    ablation,
    shots,
    epochs,
    batch_size,
    lr,
    val_every,
    val_size,
    device,
    quiet,
) -> None:
    """Methods × seeds (× syntheses) → results.json, table.md (mean ± std) and roc.png."""

    def action() -> None:
        chosen = ABLATIONS[ablation] if ablation else {"methods": _names(methods), "syntheses": _names(synthesis)}
        settings = TrainSettings(
            shots=shots, epochs=epochs, batch_size=batch_size, lr=lr, validation_size=val_size, val_every=val_every
        )
        seed_list = [int(seed) for seed in _names(seeds)]
        run_bench(
            data, out, backbone, chosen["methods"], seed_list, chosen["syntheses"], settings, arch, device, not quiet
        )
        click.echo((out / "table.md").read_text().rstrip())
        click.echo(f"results → {out / 'results.json'}, ROC curves → {out / 'roc.png'}")

    _run_safely(action)


@cli.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Labelled films: a folder with labels.csv (image,findings,split), e.g. ../shared/data/nih-cxr8.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (resumed if it exists).")
@click.option("--epochs", default=60, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="AdamW learning rate (cosine schedule).")
@click.option("--views", default=4, show_default=True, help="Augmented views cached per training film (ICL).")
@click.option("--seed", default=0, show_default=True)
@device_option
@quiet_option
def pretrain(data, out, epochs, batch_size, lr, views, seed, device, quiet) -> None:
    """CXR-CLIP pre-training of the cxr-lite heads (towers frozen); writes OUT/backbone.safetensors."""

    def action() -> None:
        from ppad.pretraining import PretrainSettings
        from ppad.pretraining import pretrain as run_pretrain

        settings = PretrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, views=views, seed=seed)
        record = run_pretrain(data, out, settings, device=str(resolve_device(device)), progress=not quiet)
        scores = ", ".join(f"{name} {auc:.3f}" for name, auc in record["validation"].items())
        click.echo(f"kept epoch {record['best_epoch']} of {epochs}: zero-shot AUC on val ({scores})")
        click.echo(f"backbone → {out / 'backbone.safetensors'} (use it with --backbone {out})")

    _run_safely(action)


@cli.command(name="synth-preview")
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Image to draw on; a generated radiograph by default.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("synthesis-preview.png"), show_default=True)
@click.option(
    "--methods", default=",".join(SYNTHESIS_TASKS), show_default=True, help="Comma-separated synthesis names."
)
@click.option("--seeds", default=4, show_default=True, help="Draws per method (columns).")
@click.option("--size", default=224, show_default=True, help="Image side in pixels.")
def synth_preview(image, out, methods, seeds, size) -> None:
    """A PNG grid showing every synthesis method on the same image (mask outlines in red)."""

    def action() -> None:
        preprocessing = Preprocessing(image_size=size)
        rng = np.random.default_rng(0)
        sources = np.stack([preprocessing.resize(chest_like(rng, size)[0]) for _ in range(4)])
        base = preprocessing.resize(read_image(image)) if image else sources[0]
        names = _names(methods)
        for name in names:
            get_synthesis(name)  # unknown names fail before any drawing
        path = write_synthesis_grid(out, base, names, seeds, sources[1:], np.ones((size, size), dtype=bool))
        click.echo(f"wrote {path} ({len(names)} methods × {seeds} draws)")

    _run_safely(action)


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("ppad-demo"),
    show_default=True,
    help="Folder for the data set and the run.",
)
@click.option("--epochs", default=5, show_default=True)
@click.option("--seed", default=0, show_default=True)
@quiet_option
def demo(out, epochs, seed, quiet) -> None:
    """The embedded default: generated radiographs, the shipped cxr-lite backbone, train → score → evaluate."""
    from ppad.cli.demo import run_demo

    _run_safely(lambda: run_demo(out, epochs, seed, progress=not quiet))


if __name__ == "__main__":
    cli()
