"""``ppad pretrain``: CXR-CLIP pre-training of a dual-tower backbone on labelled films."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.cli.options import device_option, quiet_option


def _numbers(kind):
    """A click callback: a comma-separated list of ``kind`` values (empty → ())."""

    def parse(ctx, param, value: str) -> tuple:
        try:
            return tuple(kind(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None

    return parse


@click.command(name="pretrain")
@click.option(
    "--data",
    required=True,
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Labelled films: a folder with labels.csv (image,findings,split), e.g. ../shared/data/nih-cxr8. "
    "Repeat for several tables; the first one's val split selects the epoch.",
)
@click.option(
    "--source-weights",
    default="",
    callback=_numbers(float),
    help="Draws per film per epoch for each --data table in order, e.g. 1,0.25 (default 1 each).",
)
@click.option(
    "--normals",
    type=click.Path(exists=True, path_type=Path),
    help="A detection data set (folder or CSV) whose training normals join pre-training as 'No Finding'; "
    "its abnormal films and test/ folder are never read.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder: resumed if it holds this run; one of other data or settings is refused.",
)
@click.option(
    "--train-stages",
    default=1,
    show_default=True,
    type=click.IntRange(0, 6),
    help="The image tower's last stages (+ head convolution) that learn; 0 = heads only.",
)
@click.option(
    "--memory-stages",
    default="2,3",
    show_default=True,
    callback=_numbers(int),
    help="Tower stages pooled into the few-shot memory (knn) of the backbone written.",
)
@click.option("--epochs", default=60, show_default=True)
@click.option("--batch-size", default=128, show_default=True, help="The global batch, split among the processes.")
@click.option("--lr", default=1e-3, show_default=True, help="AdamW learning rate of the heads (cosine schedule).")
@click.option("--tower-lr", default=1e-4, show_default=True, help="AdamW learning rate of the tower's tail.")
@click.option("--views", default=4, show_default=True, help="Augmented views cached per training film (ICL).")
@click.option(
    "--text-pairs", default=8, show_default=True, help="Text pairs cached per report or label set (TCL, sampling)."
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--precision",
    default="32",
    show_default=True,
    type=click.Choice(["32", "bf16-mixed", "16-mixed"]),
    help="Training arithmetic: float32, or autocast to bfloat16 / float16 (with loss scaling).",
)
@click.option(
    "--accumulate", default=1, show_default=True, type=click.IntRange(1), help="Global batches per optimizer step."
)
@click.option(
    "--devices",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Processes on this machine (CPU: gloo; GPU: one per GPU, NCCL).",
)
@click.option("--num-nodes", default=1, show_default=True, type=click.IntRange(1), help="Machines taking part.")
@click.option(
    "--rdzv-endpoint",
    default=None,
    metavar="HOST:PORT",
    help="With --num-nodes above 1: where the machines meet (the same on all; a port free on HOST).",
)
@click.option(
    "--workers",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="DataLoader workers reading cached rows per process.",
)
@device_option
@quiet_option
def command(
    data,
    source_weights,
    normals,
    out,
    train_stages,
    memory_stages,
    devices,
    num_nodes,
    rdzv_endpoint,
    workers,
    device,
    quiet,
    **training,
) -> None:
    """CXR-CLIP pre-training of a cxr-lite backbone (heads + image-tower tail); writes OUT/backbone.safetensors."""
    import sys

    from ppad.backbones import DualTowerSpec, resolve_device
    from ppad.pretraining import PretrainSettings, pretrain
    from ppad.pretraining.distributed import Ranks, join, launched, leave, relaunch

    settings = PretrainSettings(source_weights=source_weights, **training)
    spec = DualTowerSpec(trained_stages=train_stages, memory_stages=memory_stages)
    if (devices > 1 or num_nodes > 1) and not launched():
        raise SystemExit(relaunch(sys.argv[1:], devices, num_nodes, rdzv_endpoint))
    here, ranks = str(resolve_device(device)), Ranks()
    if launched():
        ranks, joined = join(devices, num_nodes, here)
        here = str(joined)
    try:
        record = pretrain(
            data, out, settings, spec, device=here, progress=not quiet, normals=normals, ranks=ranks, workers=workers
        )
    finally:
        leave()
    if record is None:
        return
    scores = "; ".join(
        f"{table}: " + ", ".join(f"{name} {auc:.3f}" for name, auc in aucs.items())
        for table, aucs in record["validation"].items()
    )
    click.echo(f"kept epoch {record['best_epoch']} of {settings.epochs}: zero-shot AUC on val ({scores})")
    click.echo(f"backbone → {out / 'backbone.safetensors'} (use it with --backbone {out})")
