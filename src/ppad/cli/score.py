"""``ppad score``: score files and folders with a trained run; unreadable files never stop a batch."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.cli.options import device_option, quiet_option, trained_run_options
from ppad.data import ImageReadError, list_images
from ppad.errors import DataError
from ppad.runs import load_run
from ppad.scoring import score_files


def expand_inputs(inputs: tuple[Path, ...]) -> tuple[list[Path], list[ImageReadError]]:
    """Files as given, folders expanded; a missing path or an image-less folder is a failure."""
    paths: list[Path] = []
    failures: list[ImageReadError] = []
    for item in inputs:
        if item.is_dir():
            found = list_images(item)
            paths.extend(found)
            if not found:
                failures.append(ImageReadError(item, "folder holds no supported image (PNG, JPEG, TIFF, BMP, DICOM)"))
        elif item.exists():
            paths.append(item)
        else:
            failures.append(ImageReadError(item, "no such file or folder"))
    return paths, failures


@click.command(name="score")
@trained_run_options
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="CSV (and .json beside it); default RUN/scores.csv."
)
@device_option
@quiet_option
def command(run_dir, backbone, checkpoint, batch_size, images, out, device, quiet) -> None:
    """Score image files or folders: one row per image, a column per view.

    Exits 2 when no input could be scored; unreadable files are rows with their error."""
    paths, missing = expand_inputs(images)
    model = load_run(run_dir, backbone, checkpoint, device)
    report = score_files(model, paths, batch_size, progress=not quiet)
    report.failures[:0] = missing
    csv_path = out or run_dir / "scores.csv"
    report.write_csv(csv_path)
    report.write_json(csv_path.with_suffix(".json"))
    for failure in report.failures:
        click.echo(f"skipped: {failure}", err=True)
    if not report.paths:
        raise DataError(f"none of the {len(report.failures)} inputs could be scored (each file's problem: {csv_path})")
    click.echo(f"scored {len(report.paths)} images ({len(report.failures)} unreadable) → {csv_path}")
