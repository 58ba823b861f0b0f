"""``ppad lungs``: lung-field masks, overlays and a CSV for files, folders or lists of films."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.cli.options import quiet_option

COLUMNS = ["path", "width", "height", "right_fraction", "left_fraction", "regions", "reason", "seconds", "error"]


MASK_FILES = {"mask": ".png", "sides": "_sides.png", "overlay": "_overlay.png"}  # per film: kind → ending


@click.command(name="lungs")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (new, or one to extend).")
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A `ppad lungs-train` lung-unet.safetensors instead of the shipped one.",
)
@quiet_option
def command(images, out, weights, quiet) -> None:
    """Lung-field masks, overlays and a CSV (areas, trust flag) with the shipped segmenter.

    IMAGES are files, folders (searched recursively) or .csv lists with a 'path' column. Per film,
    named from its whole file name (NAME = the name without its image suffix; -2, -3… when another
    file already has that name): OUT/NAME.png (the film's size, 255 = lung field as segmented, 0
    elsewhere), OUT/NAME_sides.png (the regions used: 1 = patient's right lung, 2 = patient's left
    lung, 0 elsewhere; the image halves when the mask is not trusted), OUT/NAME_overlay.png
    (outlines, R / L) and a row of OUT/lungs.csv: lung area fractions, regions ('lungs' or 'halves'
    with the reason), seconds, and the names of its three files. A folder used before is extended:
    no file in it is replaced, except this segmenter's own outputs of the same film. Unreadable files
    are rows with their error; exits 2 when no film could be read."""
    import time
    from functools import partial

    from ppad.cli.score import echo_repeated, expand_inputs, refuse_empty_lists
    from ppad.errors import DataError
    from ppad.outputs import OutputFolder, writable_folder

    inputs = expand_inputs(images)
    refuse_empty_lists(inputs.paths, inputs.failures)
    if not inputs.paths:
        raise DataError(f"none of the {len(inputs.failures)} inputs is a film: " + _problems(inputs.failures))
    writable_folder(out, "--out")

    import numpy as np
    from PIL import Image
    from tqdm.auto import tqdm

    from ppad.data.readers import ImageReadError, read_image
    from ppad.io import atomic_write
    from ppad.lungs.model import load_lung_segmenter
    from ppad.lungs.overlay import render_lung_overlay

    segmenter = load_lung_segmenter(weights)
    folder = OutputFolder(out, "lungs.csv", COLUMNS, MASK_FILES, f"segmenter {segmenter.fingerprint}", "--out")
    names = folder.assign(inputs.paths)
    failures = list(inputs.failures)
    for failure in failures:
        folder.record(failure.path, {"path": failure.path, "error": failure.problem})
    segmented = flagged = 0
    for path in tqdm(inputs.paths, desc="lungs", unit="film", disable=quiet):
        started = time.perf_counter()
        try:
            film = read_image(path)
        except ImageReadError as error:
            failures.append(error)
            folder.record(path, {"path": path, "error": error.problem})
            continue
        fields = segmenter.segment([film])[0]
        seconds = time.perf_counter() - started
        right, left = fields.side_fractions()
        files = names[path].files
        for kind, picture in (
            ("mask", Image.fromarray(np.uint8(fields.mask) * 255)),
            ("sides", Image.fromarray(fields.side_labels())),
            ("overlay", render_lung_overlay(film, fields, str(path))),
        ):
            atomic_write(files[kind], partial(picture.save, format="PNG"))
        values = {"path": path, "width": film.shape[1], "height": film.shape[0]}
        values |= {"right_fraction": f"{right:.4f}", "left_fraction": f"{left:.4f}", "regions": fields.regions}
        folder.record(path, {**values, "reason": fields.reason, "seconds": f"{seconds:.3f}", "error": ""}, names[path])
        segmented += 1
        flagged += not fields.trusted

    csv_path = folder.write_index()
    echo_repeated(inputs.repeated)
    for failure in failures:
        click.echo(f"skipped: {failure}", err=True)
    if segmented == 0:
        raise DataError(f"none of the {len(failures)} inputs could be read (each file's problem: {csv_path})")
    click.echo(
        f"lung fields of {segmented} films ({flagged} not trusted: image halves used; "
        f"{len(failures)} unreadable) → {out} (each film's files: {csv_path})"
    )


def _problems(failures: list) -> str:
    return "; ".join(str(failure) for failure in failures[:3]) + (" …" if len(failures) > 3 else "")
