"""``ppad serve``: a trained run behind an HTTP API and a drop-a-film page."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.choices import CHECKPOINTS
from ppad.cli.options import device_option
from ppad.errors import PpadError
from ppad.serve.limits import MIB, ServeLimits

DEFAULTS = ServeLimits()


@click.command(name="serve")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backbone", default=None, help="Weights path if moved since training (fingerprint still checked).")
@click.option("--checkpoint", type=click.Choice(sorted(CHECKPOINTS)), default="best", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True)
@device_option
@click.option("--max-upload-mb", default=DEFAULTS.max_upload_bytes / MIB, show_default=True, help="Largest upload.")
@click.option("--max-pixels", default=DEFAULTS.max_pixels, show_default=True, help="Largest film (width × height).")
@click.option("--timeout", default=DEFAULTS.timeout_s, show_default=True, help="Seconds before a request gets 504.")
@click.option(
    "--workers",
    "--max-concurrency",
    "workers",
    default=DEFAULTS.max_concurrency,
    show_default=True,
    help="Uploads decoded and scored at once (the model itself runs one at a time).",
)
@click.option("--queue", default=DEFAULTS.queue_size, show_default=True, help="Requests that may wait; more get 503.")
def command(
    run_dir, backbone, checkpoint, host, port, device, max_upload_mb, max_pixels, timeout, workers, queue
) -> None:
    """Serve a trained run: POST /v1/score, GET /v1/health, GET /v1/model, a page at /, docs at /docs."""
    try:
        from ppad.serve.server import run_server
    except ImportError as error:
        raise PpadError(f"ppad serve needs its extra: pip install 'ppad[serve]' ({error})") from None
    limits = ServeLimits(round(max_upload_mb * MIB), max_pixels, timeout, workers, queue)
    run_server(run_dir, host=host, port=port, device=device, limits=limits, checkpoint=checkpoint, backbone=backbone)


if __name__ == "__main__":
    command()
