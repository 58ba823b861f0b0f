"""``ppad lungs-train``: regenerate the shipped lung-field segmenter from a ``lung-masks`` folder."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.cli.options import quiet_option


@click.command(name="lungs-train")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A lung-masks folder: labels.csv (image, mask, split = train/val), images/, masks/.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for lung-unet.safetensors + lung-unet.json (src/ppad/lungs/weights ships them).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=14, show_default=True)
@click.option("--input-size", type=click.IntRange(min=64), default=128, show_default=True, help="Square network input.")
@click.option("--batch-size", type=click.IntRange(min=2), default=16, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@quiet_option
def command(data, out, epochs, input_size, batch_size, lr, seed, quiet) -> None:
    """Regenerate the shipped lung segmenter from a lung-masks folder.

    Trains the lung-field U-Net on the train split and keeps the epoch with the best val Dice."""
    import torch

    from ppad.lungs.model import LungNetSpec
    from ppad.lungs.training import LungTrainSettings, train_lung_segmenter

    torch.use_deterministic_algorithms(True, warn_only=True)
    settings = LungTrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    record = train_lung_segmenter(data, out, LungNetSpec(input_size=input_size), settings, progress=not quiet)
    dice = record["val_dice"]
    click.echo(
        f"val Dice {dice['mean']:.4f} (median {dice['median']:.4f}, min {dice['min']:.4f}) at epoch "
        f"{record['best_epoch']}/{record['epochs']}, {record['dtype']} → {out}"
    )
