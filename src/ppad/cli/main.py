"""The ``ppad`` command line. Commands are imported when run, so ``ppad --help`` starts fast.

One error boundary for every command: a :class:`~ppad.errors.PpadError` (a bad file, option,
device or run folder) prints one line naming it and exits 2; anything else is a bug in ppad
and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import os

import click

from ppad.errors import PpadError

#: name → (module defining ``command``, one-line help shown by ``ppad --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ppad.cli.train", "Learn prompts from k normal images (resumes an interrupted run in --out)."),
    "score": ("ppad.cli.score", "Score image files or folders: one row per image, a column per view."),
    "evaluate": (
        "ppad.cli.evaluate",
        "Metrics on the test split (files the run trained or validated on are left out).",
    ),
    "bench": (
        "ppad.cli.bench",
        "Methods × seeds (× syntheses, × presets) → results.json, table.md (mean ± std) and roc.png.",
    ),
    "pretrain": (
        "ppad.cli.pretrain",
        "CXR-CLIP pre-training of a cxr-lite backbone (heads + image-tower tail); writes OUT/backbone.safetensors.",
    ),
    "synth-preview": (
        "ppad.cli.synth_preview",
        "A PNG grid showing every synthesis method on the same image (mask outlines in red).",
    ),
    "export": (
        "ppad.cli.export",
        "Export a trained run to ONNX (prompts folded in), checked against PyTorch on the run's films.",
    ),
    "serve": (
        "ppad.cli.serve",
        "Serve a trained run: POST /v1/score, GET /v1/health, GET /v1/model, a page at /, docs at /docs.",
    ),
    "demo": (
        "ppad.cli.demo",
        "The embedded default: generated radiographs, the shipped cxr-lite backbone, train → score → evaluate.",
    ),
    "lungs": ("ppad.cli.lungs", "Lung-field masks, overlays and a CSV (areas, trust flag) with the shipped segmenter."),
    "lungs-train": ("ppad.cli.lungs_train", "Regenerate the shipped lung segmenter from a lung-masks folder."),
}


class LazyGroup(click.Group):
    """Lists commands from :data:`COMMANDS` without importing them; runs them inside the boundary."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name][0]).command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PpadError as error:
            if os.environ.get("RANK", "0") == "0":  # the other processes of a launch read the same input
                click.echo(f"error: {error}", err=True)
            ctx.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ppad")
def cli() -> None:
    """Few-shot anomaly detection in chest X-rays with position-guided CLIP prompts (PPAD)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")


if __name__ == "__main__":
    cli()
