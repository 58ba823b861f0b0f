"""``ppad score``: score files, folders or lists of films with a trained run, as an archive would
need it: streamed, appended as produced, resumable; unreadable files never stop a batch."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.cli.options import device_option, map_method_option, quiet_option, trained_run_options
from ppad.data import ImageReadError, list_images
from ppad.errors import DataError
from ppad.runs import RunFolder
from ppad.scoring.archive import Provenance, read_path_list, score_archive, write_scores_json
from ppad.scoring.scorer import csv_columns


def expand_inputs(inputs: tuple[Path, ...]) -> tuple[list[Path], list[ImageReadError]]:
    """Files as given, folders expanded, ``.csv`` lists read; a missing path or an image-less
    folder is a failure of its own."""
    paths: list[Path] = []
    failures: list[ImageReadError] = []
    for item in inputs:
        if item.is_dir():
            found = list_images(item)
            paths.extend(found)
            if not found:
                failures.append(ImageReadError(item, "folder holds no supported image (PNG, JPEG, TIFF, BMP, DICOM)"))
        elif item.suffix.lower() == ".csv" and item.is_file():
            paths.extend(read_path_list(item))
        elif item.exists():
            paths.append(item)
        else:
            failures.append(ImageReadError(item, "no such file or folder"))
    return paths, failures


@click.command(name="score")
@trained_run_options
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV (and .json beside it); default RUN/scores.csv. An unfinished CSV of this run is resumed.",
)
@click.option(
    "--maps",
    "maps_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write each film's anomaly map (.npy, film resolution) and overlay PNG here.",
)
@map_method_option
@device_option
@quiet_option
def command(run_dir, backbone, checkpoint, batch_size, images, out, maps_dir, map_method, device, quiet) -> None:
    """Score image files or folders: one row per image, a column per view.

    IMAGES are files, folders (searched recursively) or .csv lists with a 'path' column. Rows are
    appended as they are produced; re-running the same command after a kill skips what is done.
    Exits 2 when no input could be scored; unreadable files are rows with their error."""
    paths, missing = expand_inputs(images)
    run = RunFolder(run_dir)
    model = run.load_model(backbone, checkpoint, device)
    csv_path = out or run.root / "scores.csv"
    provenance = Provenance.of(run.root, run.prompts_path(checkpoint), checkpoint, csv_columns(model.view_names))
    summary = score_archive(model, paths, csv_path, provenance, missing, batch_size, progress=not quiet)
    total = write_scores_json(csv_path, csv_path.with_suffix(".json"), model)
    if maps_dir is not None:
        from ppad.maps import write_maps

        maps = write_maps(model, paths, maps_dir, map_method, batch_size, progress=not quiet)
        click.echo(f"maps of {len(maps.written)} films ({map_method}) → {maps_dir}")
    for failure in summary.failures:
        click.echo(f"skipped: {failure}", err=True)
    if total == 0:
        raise DataError(f"none of the {len(summary.failures)} inputs could be scored (each file's problem: {csv_path})")
    resumed = f"; {summary.resumed} rows already there from an interrupted run" if summary.resumed else ""
    rate = summary.scored / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"scored {summary.scored} images ({len(summary.failures)} unreadable{resumed}) in {summary.seconds:.1f} s "
        f"({rate:.1f} images/s) → {csv_path}"
    )
