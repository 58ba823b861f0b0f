"""``ppad pretrain``: CXR-CLIP pre-training of a dual-tower backbone on labelled films."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.cli.options import device_option, quiet_option


@click.command(name="pretrain")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Labelled films: a folder with labels.csv (image,findings,split), e.g. ../shared/data/nih-cxr8.",
)
@click.option(
    "--normals",
    type=click.Path(exists=True, path_type=Path),
    help="A detection data set (folder or CSV) whose training normals join pre-training as 'No Finding'; "
    "its abnormal films and test/ folder are never read.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (resumed if it exists).")
@click.option("--epochs", default=60, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="AdamW learning rate (cosine schedule).")
@click.option("--views", default=4, show_default=True, help="Augmented views cached per training film (ICL).")
@click.option("--seed", default=0, show_default=True)
@device_option
@quiet_option
def command(data, normals, out, epochs, batch_size, lr, views, seed, device, quiet) -> None:
    """CXR-CLIP pre-training of the cxr-lite heads (towers frozen); writes OUT/backbone.safetensors."""
    from ppad.backbones import resolve_device
    from ppad.pretraining import PretrainSettings, pretrain

    settings = PretrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, views=views, seed=seed)
    record = pretrain(data, out, settings, device=str(resolve_device(device)), progress=not quiet, normals=normals)
    scores = ", ".join(f"{name} {auc:.3f}" for name, auc in record["validation"].items())
    click.echo(f"kept epoch {record['best_epoch']} of {epochs}: zero-shot AUC on val ({scores})")
    click.echo(f"backbone → {out / 'backbone.safetensors'} (use it with --backbone {out})")
