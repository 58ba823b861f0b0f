"""``ppad evaluate``: metrics of a trained run on a labelled test split, and its anomaly maps
against radiologists' boxes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ppad.choices import DEFAULT_MAP_METHOD, MAP_METHOD_NAMES
from ppad.cli.options import device_option, map_lungs_option, quiet_option, trained_run_options
from ppad.errors import SettingsError
from ppad.io import write_json


@click.command(name="evaluate")
@trained_run_options
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None, help="Data folder or CSV manifest.")
@click.option(
    "--boxes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV of boxes (image,finding,x,y,w,h in the film's pixels): localization of the anomaly maps.",
)
@click.option(
    "--map-method",
    "map_methods",
    multiple=True,
    type=click.Choice([DEFAULT_MAP_METHOD, "all", *MAP_METHOD_NAMES]),
    help="Map(s) to localize with --boxes (repeatable; 'all' = every one that applies) [default: auto].",
)
@map_lungs_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for metrics.json, scores and localization.json; default RUN/evaluation.",
)
@click.option("--bootstrap", default=1000, show_default=True, help="Bootstrap resamples for the AUC's 95% CI.")
@device_option
@quiet_option
def command(
    run_dir, backbone, checkpoint, batch_size, data, boxes, map_methods, map_lungs, out, bootstrap, device, quiet
) -> None:
    """Metrics on the test split (files the run trained or validated on are left out)."""
    if data is None and boxes is None:
        raise SettingsError("give --data (a labelled test split), --boxes (a boxes CSV) or both")
    from ppad.outputs import writable_folder

    writable_folder(out or Path(run_dir) / "evaluation", "--out")
    from ppad.maps import applicable_map_methods
    from ppad.runs import RunFolder
    from ppad.scoring import evaluate_run, format_metrics
    from ppad.scoring.localization import evaluate_localization, format_localization

    run = RunFolder(run_dir)
    out = out or run.evaluation_dir
    model = run.load_model(backbone, checkpoint, device)  # the backbone is loaded once for both parts
    if data is not None:
        result, files = evaluate_run(
            run_dir, data, out, model.backbone, checkpoint, device, batch_size, bootstrap, not quiet, sys.argv
        )
        click.echo(format_metrics(result.metrics))
        if result.excluded:
            click.echo(f"left out {len(result.excluded)} test images the run trained or validated on")
        click.echo(f"metrics → {files['metrics']}")
        click.echo(f"figures → {', '.join(str(path) for path in files['figures'].values())}")
        unreadable = result.report.failures
        for failure in unreadable:
            click.echo(f"skipped: {failure}", err=True)
        click.echo(f"evaluated {len(result.report.paths)} test images ({len(unreadable)} unreadable)")
    if boxes is not None:
        names = list(map_methods) or [DEFAULT_MAP_METHOD]
        if "all" in names:
            names = applicable_map_methods(model)
        seed = run.read_manifest().seed
        localization = evaluate_localization(model, boxes, batch_size, names, seed, not quiet, map_lungs)
        path = write_json(Path(out) / "localization.json", {**localization, "run": str(run.root), "command": sys.argv})
        click.echo(format_localization(localization))
        click.echo(f"localization → {path}")
