"""``ppad evaluate``: metrics of a trained run on a labelled test split."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ppad.cli.options import data_option, device_option, quiet_option, trained_run_options
from ppad.scoring import evaluate_run, format_metrics


@click.command(name="evaluate")
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
def command(run_dir, backbone, checkpoint, batch_size, data, out, bootstrap, device, quiet) -> None:
    """Metrics on the test split (files the run trained or validated on are left out)."""
    result, files = evaluate_run(
        run_dir, data, out, backbone, checkpoint, device, batch_size, bootstrap, not quiet, sys.argv
    )
    click.echo(format_metrics(result.metrics))
    if result.excluded:
        click.echo(f"left out {len(result.excluded)} test images the run trained or validated on")
    click.echo(f"metrics → {files['metrics']}")
