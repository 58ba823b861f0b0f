"""Command-line options shared by several ``ppad`` commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from ppad.backbones import ARCHITECTURES, DEFAULT_BACKBONE
from ppad.runs import PROMPT_FILES


def compose(*options: Callable) -> Callable:
    """Apply click options in the order written (first listed = first in --help)."""

    def decorate(function: Callable) -> Callable:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def names(text: str) -> list[str]:
    """A comma-separated option as a list of its non-empty items."""
    return [item.strip() for item in text.split(",") if item.strip()]


device_option = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 … or auto")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")

data_option = click.option(
    "--data", required=True, type=click.Path(exists=True, path_type=Path), help="Data folder or CSV manifest."
)

backbone_options = compose(
    click.option(
        "--backbone",
        default=DEFAULT_BACKBONE,
        show_default=True,
        help="'cxr-lite' (shipped), a `ppad pretrain` output, CLIP weights (CheXzero .pt, OpenAI JIT, "
        "open_clip, safetensors), or 'tiny' (random, for tests).",
    ),
    click.option(
        "--arch",
        type=click.Choice(sorted(ARCHITECTURES)),
        default=None,
        help="Backbone layout; recognised from the weights if omitted.",
    ),
)

schedule_options = compose(
    click.option("--shots", default=64, show_default=True, help="k normal training images."),
    click.option("--epochs", default=100, show_default=True),
    click.option("--batch-size", default=16, show_default=True),
    click.option("--lr", default=1e-3, show_default=True, help="SGD learning rate (momentum 0.9, cosine schedule)."),
    click.option("--val-every", default=1, show_default=True, help="Validate every n-th epoch (and the last one)."),
    click.option(
        "--val-size",
        default=64,
        show_default=True,
        help="Held-out normals for model selection (each also with a synthetic anomaly).",
    ),
)

trained_run_options = compose(
    click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)),
    click.option("--backbone", default=None, help="Weights path if moved since training (fingerprint still checked)."),
    click.option("--checkpoint", type=click.Choice(sorted(PROMPT_FILES)), default="best", show_default=True),
    click.option("--batch-size", default=32, show_default=True),
)
