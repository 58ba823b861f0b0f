"""``ppad lungs``: lung-field masks, overlays and a CSV for files, folders or lists of films."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.cli.options import quiet_option

COLUMNS = ["path", "width", "height", "right_fraction", "left_fraction", "regions", "reason", "seconds", "error"]


@click.command(name="lungs")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A `ppad lungs-train` lung-unet.safetensors instead of the shipped one.",
)
@quiet_option
def command(images, out, weights, quiet) -> None:
    """Lung-field masks, overlays and a CSV (areas, trust flag) with the shipped segmenter.

    IMAGES are files, folders (searched recursively) or .csv lists with a 'path' column. Per film:
    OUT/<stem>.png (the film's size, 255 = lung field as segmented, 0 elsewhere), OUT/<stem>_sides.png (the regions used: 1 = patient's right lung, 2 = patient's left lung,
    0 elsewhere; the image halves when the mask is not trusted), OUT/<stem>_overlay.png (outlines,
    R / L) and a row of OUT/lungs.csv: lung area fractions, regions ('lungs' or 'halves' with the
    reason), seconds. Unreadable files are rows with their error; exits 2 when no film could be read."""
    import csv
    import time

    import numpy as np
    from PIL import Image
    from tqdm.auto import tqdm

    from ppad.cli.score import expand_inputs, refuse_empty_lists
    from ppad.data.readers import ImageReadError, read_image
    from ppad.errors import DataError
    from ppad.io import atomic_write, unique_stems
    from ppad.lungs.model import load_lung_segmenter
    from ppad.lungs.overlay import render_lung_overlay

    paths, failures = expand_inputs(images)
    refuse_empty_lists(paths, failures)
    segmenter = load_lung_segmenter(weights)
    out.mkdir(parents=True, exist_ok=True)
    stems = unique_stems(paths)
    rows = [{"path": str(failure.path), "error": failure.problem} for failure in failures]
    segmented = flagged = 0
    for path in tqdm(paths, desc="lungs", unit="film", disable=quiet):
        started = time.perf_counter()
        try:
            film = read_image(path)
        except ImageReadError as error:
            failures.append(error)
            rows.append({"path": str(path), "error": error.problem})
            continue
        fields = segmenter.segment([film])[0]
        seconds = time.perf_counter() - started
        right, left = fields.side_fractions()
        stem = out / stems[path]
        Image.fromarray(np.uint8(fields.mask) * 255).save(stem.with_suffix(".png"))
        Image.fromarray(fields.side_labels()).save(stem.with_name(f"{stem.name}_sides.png"))
        render_lung_overlay(film, fields, path.name).save(stem.with_name(f"{stem.name}_overlay.png"))
        rows.append(
            {
                "path": str(path),
                "width": film.shape[1],
                "height": film.shape[0],
                "right_fraction": f"{right:.4f}",
                "left_fraction": f"{left:.4f}",
                "regions": fields.regions,
                "reason": fields.reason,
                "seconds": f"{seconds:.3f}",
            }
        )
        segmented += 1
        flagged += not fields.trusted

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    csv_path = atomic_write(out / "lungs.csv", write_csv)
    for failure in failures:
        click.echo(f"skipped: {failure}", err=True)
    if segmented == 0:
        raise DataError(f"none of the {len(failures)} inputs could be read (each file's problem: {csv_path})")
    click.echo(
        f"lung fields of {segmented} films ({flagged} not trusted: image halves used; "
        f"{len(failures)} unreadable) → {out}"
    )
