"""``ppad bench``: methods × seeds (× syntheses, × presets) on one backbone and data set, the paper's tables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ppad.choices import ABLATION_NAMES, METHOD_NAMES
from ppad.cli.options import (
    backbone_options,
    chosen_preset,
    data_option,
    device_option,
    names,
    preset_options,
    quiet_option,
    region_set_option,
    schedule_options,
)

if TYPE_CHECKING:
    from ppad.bench import Cell

log = logging.getLogger("ppad")
PAPER_TABLE_METHODS = "zeroshot,coop,ppad"  # the paper's Table 1 rows


def say_if_resuming(out: Path, cells: list[Cell]) -> None:
    """One line when ``out`` holds cells of an earlier, interrupted bench: how many are finished
    (trained and evaluated, so they are reused)."""
    from ppad.runs import RunFolder

    if not (out / "runs").is_dir():
        return
    finished = sum(RunFolder(out / "runs" / cell.folder).metrics_path().is_file() for cell in cells)
    log.info("resuming %s: %d of %d cells already finished", out, finished, len(cells))


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
    "--methods",
    default=None,
    help=f"Comma-separated, of: {', '.join(METHOD_NAMES)} [the backbone's validated default (cxr-lite: "
    f"patch-knn on the lung fields); a backbone that names none: {PAPER_TABLE_METHODS}].",
)
@click.option("--seeds", default="0,1,2,3,4", show_default=True)
@click.option(
    "--synthesis",
    default=None,
    help="Comma-separated synthesis names (one row each) [the preset's: ppad sas; reference sas-reference].",
)
@click.option(
    "--ablation",
    type=click.Choice(sorted(ABLATION_NAMES)),
    default=None,
    help="Table 3 (prompts) or Table 4 (synthesis) rows, overriding --methods/--synthesis; or 'preset': "
    "ppad, each reference choice alone, all reference (overriding the preset options too).",
)
@region_set_option
@preset_options
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
    region_set,
    preset,
    region_sides,
    patch_rule,
    prompt_init_std,
    loss,
    full_batch,
    causal_text,
    shots,
    epochs,
    batch_size,
    lr,
    val_every,
    val_size,
    device,
    quiet,
) -> None:
    """Methods × seeds (× syntheses, × presets) → results.json, table.md (mean ± std) and roc.png."""
    try:
        seed_list = [int(seed) for seed in names(seeds)]
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds") from None
    from ppad.bench import ABLATIONS, plan, run_bench
    from ppad.bench.harness import Ablation
    from ppad.methods.defaults import PAPER_METHOD, default_detector
    from ppad.training import TrainSettings

    if methods is None:
        default = default_detector(backbone)
        methods = PAPER_TABLE_METHODS if default.method == PAPER_METHOD else default.method
        region_set = region_set or default.settings.get("region_set")
        if default.method != PAPER_METHOD:
            click.echo(f"method: {default.describe()}")

    choices = chosen_preset(
        preset,
        region_sides=region_sides,
        patch_rule=patch_rule,
        prompt_init_std=prompt_init_std,
        loss=loss,
        full_batch=full_batch,
    )
    chosen = ABLATIONS.get(ablation) or Ablation(tuple(names(methods)), tuple(names(synthesis)) if synthesis else None)
    schedule = {"shots": shots, "epochs": epochs, "batch_size": batch_size, "lr": lr}
    given = {k: v for k, v in {**schedule, "causal_text": causal_text}.items() if v is not None}
    settings = TrainSettings(
        **{k: v for k, v in schedule.items() if v is not None}, validation_size=val_size, val_every=val_every
    )
    presets = chosen.presets or (choices,)
    say_if_resuming(out, plan(chosen.methods, chosen.syntheses, seed_list, presets))
    run_bench(
        data,
        out,
        backbone,
        chosen.methods,
        seed_list,
        chosen.syntheses,
        settings,
        arch,
        device,
        not quiet,
        presets=presets,
        region_set=region_set,
        given=given,
    )
    click.echo((out / "table.md").read_text().rstrip())
    click.echo(f"results → {out / 'results.json'}, ROC curves → {out / 'roc.png'}")
