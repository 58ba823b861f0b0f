"""Command-line options shared by several ``ppad`` commands.

Light on purpose: choices come from :mod:`ppad.choices`, so an option error is reported before
any PyTorch module is imported (command bodies import what they need after the checks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ppad.choices import (
    ARCHITECTURE_NAMES,
    CHECKPOINTS,
    DEFAULT_BACKBONE,
    DEFAULT_MAP_METHOD,
    LOSS_NAMES,
    MAP_AUTO_ORDER,
    MAP_METHOD_NAMES,
    PATCH_RULE_NAMES,
    PRESET_NAMES,
    REGION_SET_NAMES,
    SIDES,
)
from ppad.errors import SettingsError

if TYPE_CHECKING:
    from ppad.methods.presets import ChoiceSet


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
        type=click.Choice(sorted(ARCHITECTURE_NAMES)),
        default=None,
        help="Backbone layout; recognised from the weights if omitted.",
    ),
)


def at_least_one(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """A count option's check at parse time, worded as ``TrainSettings`` words it."""
    if value is not None and value < 1:
        raise SettingsError(f"--{param.name.replace('_', '-')} must be at least 1, got {value}")
    return value


#: the schedule options a method family's preset may set; given on the command line, they win
SCHEDULE_CHOICES = ("shots", "epochs", "batch_size", "lr")

schedule_options = compose(
    click.option(
        "--shots",
        type=int,
        default=None,
        callback=at_least_one,
        help="k normal training images [64; mediclip reference 16].",
    ),
    click.option("--epochs", type=int, default=None, callback=at_least_one, help="[100; mediclip 50, reference 200]"),
    click.option("--batch-size", type=int, default=None, callback=at_least_one, help="[16; mediclip 8]"),
    click.option(
        "--lr",
        type=float,
        default=None,
        help="Learning rate [1e-3: SGD, momentum 0.9, cosine; mediclip Adam, constant].",
    ),
    click.option(
        "--val-every",
        default=1,
        show_default=True,
        callback=at_least_one,
        help="Validate every n-th epoch (and the last one).",
    ),
    click.option(
        "--val-size",
        type=click.IntRange(min=0),
        default=64,
        show_default=True,
        help="Held-out normals for model selection (each also with a synthetic anomaly).",
    ),
)

region_set_option = click.option(
    "--region-set",
    type=click.Choice(REGION_SET_NAMES),
    default=None,
    help="Positions: image halves ('ppad'), each film's lung fields from the shipped segmenter ('lungs': "
    "anomalies placed and the memory pooled inside them), or one whole view [method's default].",
)

preset_options = compose(
    click.option(
        "--preset",
        type=click.Choice(PRESET_NAMES),
        default="ppad",
        show_default=True,
        help="ppad's choices, or the authors' code's ('reference'); the options below override one each.",
    ),
    click.option(
        "--region-sides",
        type=click.Choice(SIDES),
        default=None,
        help="'left lung' = the patient's left (image right; ppad) or image columns 0-111 ('image'; authors).",
    ),
    click.option(
        "--patch-rule",
        type=click.Choice(PATCH_RULE_NAMES),
        default=None,
        help="ViT patch inside a region: at least half its pixels (ppad) or any pixel (authors). "
        "CNN towers mask pixels exactly.",
    ),
    click.option(
        "--prompt-init-std",
        type=click.FloatRange(min=0),
        default=None,
        help="Image prompt initial std [ppad 0.02; authors 0.2].",
    ),
    click.option(
        "--loss",
        type=click.Choice(LOSS_NAMES),
        default=None,
        help="BCE on the softmax abnormal probability (ppad) or on each class logit alone (authors).",
    ),
    click.option(
        "--full-batch/--no-full-batch",
        default=None,
        help="All shots in one batch, one step per epoch (authors) [ppad: --batch-size].",
    ),
    click.option(
        "--causal-text/--no-causal-text",
        default=None,
        help="mediclip: run the CLIP text transformer with its causal mask (ppad) or without (authors).",
    ),
)


def chosen_preset(preset: str, method: str = "ppad", **choices) -> ChoiceSet:
    """The named preset of ``method``'s family with every given choice (``None`` = the preset's)
    applied; schedule options it has no choice for are left to ``TrainSettings``, and any other
    choice it lacks is an error naming the method."""
    from ppad.methods import get_method
    from ppad.methods.presets import get_preset

    base = get_preset(preset, get_method(method).family)
    given = {k: v for k, v in choices.items() if v is not None}
    stray = [k for k in given if k not in base.choice_names() and k not in SCHEDULE_CHOICES]
    if stray:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in stray)
        raise SettingsError(f"{flags} does not apply to --method {method}")
    return base.overriding(**{k: v for k, v in given.items() if k in base.choice_names()})


def run_dir_option(required: bool = True, help: str | None = None) -> Callable:
    path = click.Path(exists=True, file_okay=False, path_type=Path)
    return click.option("--run", "run_dir", required=required, type=path, help=help)


trained_weights_options = compose(
    click.option("--backbone", default=None, help="Weights path if moved since training (fingerprint still checked)."),
    click.option("--checkpoint", type=click.Choice(sorted(CHECKPOINTS)), default="best", show_default=True),
)
run_options = compose(run_dir_option(), trained_weights_options)
batch_size_option = click.option("--batch-size", default=32, show_default=True)
trained_run_options = compose(run_options, batch_size_option)


map_method_option = click.option(
    "--map-method",
    type=click.Choice([DEFAULT_MAP_METHOD, *MAP_METHOD_NAMES]),
    default=DEFAULT_MAP_METHOD,
    show_default=True,
    help=f"Anomaly map: 'auto' takes the first that applies to the run's method ({', '.join(MAP_AUTO_ORDER)}).",
)
map_lungs_option = click.option(
    "--map-lungs/--no-map-lungs",
    default=True,
    show_default=True,
    help="Restrict each map to the film's lung fields where the segmenter trusts them (outside: the in-lung minimum).",
)
