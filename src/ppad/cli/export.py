"""``ppad export``: a trained run as one ONNX graph that scores without PyTorch."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.cli.options import run_options


@click.command(name="export")
@run_options
@click.option("--format", "export_format", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="model.onnx to write.")
def command(run_dir, backbone, checkpoint, export_format, out) -> None:
    """Export a trained run to ONNX (prompts folded in), checked against PyTorch on the run's films.

    The graph takes resized films [B, S, S] in [0, 1] (any B) and returns every view's abnormal
    probability and the final score; OUT.json beside it records the resize, the views and the
    measured parity. Score with it: ppad score --onnx OUT FILES."""
    from ppad.outputs import writable_file

    writable_file(out, "--out")
    from ppad.export.onnx import PARITY_TOLERANCE, export_run

    parity = export_run(run_dir, out, checkpoint, backbone)
    films = f"{parity.films} of the run's films" if parity.real_films else f"{parity.films} random images"
    click.echo(
        f"exported {run_dir} ({checkpoint}) → {out}; parity on {films} at batch sizes "
        f"{', '.join(map(str, parity.max_probability_difference))}: max |Δp| {parity.worst:.1e} ≤ {PARITY_TOLERANCE:.0e}, "
        "same decisions"
    )
