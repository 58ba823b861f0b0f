"""``ppad bench``: methods × seeds (× syntheses) on one backbone and data set, the paper's tables."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.bench import ABLATIONS, run_bench
from ppad.cli.options import backbone_options, data_option, device_option, names, quiet_option, schedule_options
from ppad.methods import METHODS
from ppad.training import TrainSettings


@click.command(name="bench")
@data_option
@backbone_options
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Bench folder (finished cells with the same settings are reused; other settings are refused).",
)
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
def command(
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
    chosen = ABLATIONS[ablation] if ablation else {"methods": names(methods), "syntheses": names(synthesis)}
    settings = TrainSettings(
        shots=shots, epochs=epochs, batch_size=batch_size, lr=lr, validation_size=val_size, val_every=val_every
    )
    try:
        seed_list = [int(seed) for seed in names(seeds)]
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds") from None
    run_bench(data, out, backbone, chosen["methods"], seed_list, chosen["syntheses"], settings, arch, device, not quiet)
    click.echo((out / "table.md").read_text().rstrip())
    click.echo(f"results → {out / 'results.json'}, ROC curves → {out / 'roc.png'}")
