"""``ppad synth-preview``: every synthesis method drawn on the same image, as a PNG grid."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.choices import SYNTHESIS_NAMES
from ppad.cli.options import names


@click.command(name="synth-preview")
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Image to draw on; a generated radiograph by default.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("synthesis-preview.png"), show_default=True)
@click.option(
    "--methods", default=",".join(SYNTHESIS_NAMES), show_default=True, help="Comma-separated synthesis names."
)
@click.option("--seeds", default=4, show_default=True, help="Draws per method (columns).")
@click.option("--size", default=224, show_default=True, help="Image side in pixels.")
def command(image, out, methods, seeds, size) -> None:
    """A PNG grid showing every synthesis method on the same image (mask outlines in red)."""
    import numpy as np

    from ppad.backbones.preprocessing import Preprocessing
    from ppad.data import read_image
    from ppad.data.synthetic import chest_like
    from ppad.synthesis import get_synthesis
    from ppad.synthesis.preview import write_synthesis_grid

    preprocessing = Preprocessing(image_size=size)
    rng = np.random.default_rng(0)
    sources = np.stack([preprocessing.resize(chest_like(rng, size)[0]) for _ in range(4)])
    base = preprocessing.resize(read_image(image)) if image else sources[0]
    chosen = names(methods)
    for name in chosen:
        get_synthesis(name)  # unknown names fail before any drawing
    path = write_synthesis_grid(out, base, chosen, seeds, sources[1:], np.ones((size, size), dtype=bool))
    click.echo(f"wrote {path} ({len(chosen)} methods × {seeds} draws)")
