"""``ppad score``: score files, folders or lists of films with a trained run, as an archive would
need it: streamed, appended as produced, resumable; unreadable files never stop a batch."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ppad.cli.options import (
    batch_size_option,
    device_option,
    map_lungs_option,
    map_method_option,
    quiet_option,
    run_dir_option,
    trained_weights_options,
)
from ppad.errors import DataError, FileProblem, SettingsError
from ppad.scoring.source import ScorerSource

if TYPE_CHECKING:
    from ppad.data.readers import ImageReadError

EMPTY_LIST = "holds no films (a 'path' header and no rows)"


@dataclass
class FilmInputs:
    """A call's inputs: the films (each once, in order), the inputs that failed, the films given again."""

    paths: list[Path]
    failures: list[ImageReadError]
    repeated: list[Path]


def expand_inputs(inputs: tuple[Path, ...]) -> FilmInputs:
    """Files as given, folders expanded, ``.csv`` lists read; a missing path, an image-less folder or an
    empty list is a failure of its own. A film reached twice (given, and inside a given folder) is taken
    once, where it first appears."""
    from ppad.data.layouts import list_images
    from ppad.data.readers import ImageReadError
    from ppad.outputs import film_key
    from ppad.scoring.archive import read_path_list

    found: list[Path] = []
    failures: list[ImageReadError] = []
    for item in inputs:
        if item.is_dir():
            listed = list_images(item)
            found.extend(listed)
            if not listed:
                failures.append(ImageReadError(item, "folder holds no supported image (PNG, JPEG, TIFF, BMP, DICOM)"))
        elif item.suffix.lower() == ".csv" and item.is_file():
            listed = read_path_list(item)
            found.extend(listed)
            if not listed:
                failures.append(ImageReadError(item, EMPTY_LIST))
        elif item.exists():
            found.append(item)
        else:
            failures.append(ImageReadError(item, "no such file or folder"))
    paths, repeated, seen = [], [], set()
    for path in found:
        key = film_key(path)
        (repeated if key in seen else paths).append(path)
        seen.add(key)
    return FilmInputs(paths, failures, repeated)


def echo_repeated(repeated: list[Path]) -> None:
    """One stderr line per film given more than once (taken once)."""
    for path in repeated:
        click.echo(f"given more than once, taken once: {path}", err=True)


def check_scores_out(out: Path | None, default: Path) -> None:
    """``--out`` is the scores CSV's path (its JSON goes beside it): a new or resumable ``.csv`` file in a
    folder that can be written; without it, the ``default``'s folder must be writable."""
    from ppad.outputs import writable_file, writable_folder

    if out is None:
        writable_folder(default.parent, "--out")
        return
    if out.is_dir():
        raise FileProblem(out, f"is a folder; --out is the scores CSV's file path (e.g. {out / 'scores.csv'})")
    if out.suffix.lower() != ".csv":
        raise FileProblem(
            out, "--out is the scores CSV's path and must end in .csv (the JSON summary is written beside it)"
        )
    writable_file(out, "--out")


def refuse_empty_lists(paths: list[Path], failures: list[ImageReadError]) -> None:
    """Nothing to score because every input is a list of no films: say so before loading a model."""
    if not paths and failures and all(failure.problem == EMPTY_LIST for failure in failures):
        lists = ", ".join(str(failure.path) for failure in failures)
        raise FileProblem(lists, EMPTY_LIST if len(failures) == 1 else f"each {EMPTY_LIST}")


@click.command(name="score")
@run_dir_option(required=False, help="Trained run folder (or --onnx).")
@click.option(
    "--onnx",
    "onnx_model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Score with a `ppad export` model in onnxruntime instead of a run (CPU; no --maps).",
)
@trained_weights_options
@batch_size_option
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV (and .json beside it); default RUN/scores.csv or MODEL-scores.csv. An unfinished CSV is resumed.",
)
@click.option(
    "--maps",
    "maps_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write each film's anomaly map (.npy, film resolution) and overlay PNG here.",
)
@map_method_option
@map_lungs_option
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="'ray': a Ray Data pipeline (readers as tasks, the model in a pool of actors); pip install 'ppad[ray]'.",
)
@click.option("--address", default=None, help="Ray cluster to join (auto, ray://head:10001); none = start a local one.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Ray scoring actors [default: 2].")
@click.option(
    "--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True, help="0 = actors on CPU."
)
@device_option
@quiet_option
def command(
    run_dir,
    onnx_model,
    backbone,
    checkpoint,
    batch_size,
    images,
    out,
    maps_dir,
    map_method,
    map_lungs,
    engine,
    address,
    workers,
    gpus_per_worker,
    device,
    quiet,
) -> None:
    """Score image files or folders: one row per image, a column per view.

    IMAGES are files, folders (searched recursively) or .csv lists with a 'path' column. Rows are
    appended as they are produced; re-running the same command after a kill skips what is done.
    Exits 2 when no input could be scored; unreadable files are rows with their error."""
    if onnx_model is not None and maps_dir is not None:
        raise SettingsError("--maps needs --run: anomaly maps use the PyTorch model's features and gradients")
    if onnx_model is not None and device not in ("auto", "cpu"):
        raise SettingsError(f"--onnx scores on the CPU (onnxruntime); --device {device} applies to --run only")
    if engine == "ray" and maps_dir is not None:
        raise SettingsError("--maps runs with --engine local only")
    if engine == "local" and (address or gpus_per_worker or workers):
        raise SettingsError("--address, --workers and --gpus-per-worker apply to --engine ray")
    if engine == "ray" and onnx_model is not None and gpus_per_worker:
        raise SettingsError("--onnx scores on the CPU; --gpus-per-worker applies to --run")
    if engine == "ray" and device not in ("auto", "cpu"):
        raise SettingsError("with --engine ray, --gpus-per-worker puts the actors on GPUs (not --device)")
    source = ScorerSource(run_dir, onnx_model, backbone, checkpoint, batch_size, device)
    check_scores_out(out, source.default_out())
    if maps_dir is not None:
        from ppad.outputs import writable_folder

        writable_folder(maps_dir, "--maps")
    inputs = expand_inputs(images)
    paths, missing = inputs.paths, inputs.failures
    refuse_empty_lists(paths, missing)
    from ppad.scoring.archive import free_scores_path, score_archive, write_scores_json

    if engine == "ray":
        from ppad.scoring.ray_engine import require_ray, score_with_ray

        require_ray()  # before any model is loaded
        scorer = replace(source, device="cpu").build()  # the driver only names columns and resizes
        csv_path = out or free_scores_path(source.default_out(), source.provenance(scorer), paths, missing)
        actors = replace(source.absolute(), device="cuda" if gpus_per_worker else "cpu", threads=1)
        summary = score_with_ray(
            actors, scorer, paths, csv_path, missing, address, workers or 2, gpus_per_worker, progress=not quiet
        )
    else:
        scorer = source.build()
        provenance = source.provenance(scorer)
        csv_path = out or free_scores_path(source.default_out(), provenance, paths, missing)
        summary = score_archive(scorer, paths, csv_path, provenance, missing, progress=not quiet)
    map_files = {}
    if maps_dir is not None:
        from ppad.maps import resolve_map_method, write_maps

        maps = write_maps(
            scorer.model, paths, maps_dir, map_method, batch_size, not quiet, map_lungs, source.map_producer()
        )
        map_files = {str(path): {"map": str(npy), "overlay": str(png)} for path, npy, png in maps.written}
        where = f"restricted to the lung fields, {len(maps.untrusted_lungs)} untrusted" if map_lungs else "whole film"
        drawn = resolve_map_method(scorer.model, map_method)
        click.echo(f"maps of {len(maps.written)} films ({drawn}; {where}) → {maps_dir} (index: {maps.index})")
        for path, reason in maps.untrusted_lungs:
            click.echo(f"lung fields not trusted, whole map: {path} ({reason})")
    total = write_scores_json(csv_path, csv_path.with_suffix(".json"), scorer, map_files)
    echo_repeated(inputs.repeated)
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
