"""``ppad train``: learn a method's prompts into a run folder (resumed when re-run)."""

from __future__ import annotations

from pathlib import Path

import click

from ppad.choices import METHOD_NAMES, SYNTHESIS_NAMES, TEMPLATES
from ppad.cli.options import (
    backbone_options,
    chosen_preset,
    data_option,
    device_option,
    preset_options,
    quiet_option,
    region_set_option,
    schedule_options,
)
from ppad.cli.summaries import training_summary
from ppad.data.resize import RESIZE_MODES


@click.command(name="train")
@click.option(
    "--method",
    type=click.Choice(METHOD_NAMES),
    default=None,
    help="Detection method [the backbone's validated default: on cxr-lite patch-knn inside the lung fields; "
    "a backbone that names none (CheXzero, any CLIP): ppad].",
)
@backbone_options
@data_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder to create (or resume).")
@schedule_options
@click.option(
    "--val-abnormal",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Real abnormal films (a folder, or a path,label CSV) added to validation: the epoch, calibration and "
    "fusion weight are then chosen on them against the held-out normals. Refused if any is in the test split, "
    "the support or the held-out normals.",
)
@click.option("--seed", default=0, show_default=True, help="Seeds the support draw, regions and anomalies.")
@click.option(
    "--n-ctx",
    type=int,
    default=None,
    help="Learnable context vectors [method default: 16; MaPLe 2; MediCLIP 8 per class].",
)
@click.option("--class-specific", is_flag=True, help="One context per class instead of a shared one.")
@click.option("--classes", default="normal,pneumonia", show_default=True, help="normal,abnormal class words.")
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default=None,
    help="zeroshot prompts: the class words, or CheXzero's 'no {abnormal}' / '{abnormal}'.",
)
@click.option(
    "--synthesis",
    type=click.Choice(SYNTHESIS_NAMES),
    default=None,
    help="Anomaly synthesis for training and validation [preset's: ppad sas; reference sas-reference].",
)
@region_set_option
@preset_options
@click.option("--image-size", default=224, show_default=True)
@click.option(
    "--resize", type=click.Choice(RESIZE_MODES), default="pad", show_default=True, help="Pad to square or centre-crop."
)
@device_option
@quiet_option
def command(
    method,
    backbone,
    arch,
    data,
    out,
    shots,
    epochs,
    batch_size,
    lr,
    val_every,
    val_size,
    val_abnormal,
    seed,
    n_ctx,
    class_specific,
    classes,
    template,
    synthesis,
    region_set,
    preset,
    region_sides,
    patch_rule,
    prompt_init_std,
    loss,
    full_batch,
    causal_text,
    image_size,
    resize,
    device,
    quiet,
) -> None:
    """Learn prompts from k normal images (resumes an interrupted run in --out)."""
    from ppad.outputs import writable_folder

    writable_folder(out, "--out")
    from ppad.methods import get_method
    from ppad.methods.defaults import default_detector
    from ppad.runs import RunFolder
    from ppad.training import TrainSettings, train_run

    defaults = {}
    if method is None:
        default = default_detector(backbone)
        method, defaults = default.method, default.overrides()
        click.echo(f"method: {default.describe()}")
    words = tuple(word.strip() for word in classes.split(","))
    schedule = {"shots": shots, "epochs": epochs, "batch_size": batch_size, "lr": lr}
    choices = chosen_preset(
        preset,
        method,
        region_sides=region_sides,
        patch_rule=patch_rule,
        prompt_init_std=prompt_init_std,
        loss=loss,
        full_batch=full_batch,
        synthesis=synthesis,
        causal_text=causal_text,
        **schedule,
    )
    given = {k: v for k, v in schedule.items() if v is not None}
    settings = choices.settings(TrainSettings(**given, validation_size=val_size, val_every=val_every, seed=seed))
    given_model = {
        "classes": words,
        "n_ctx": n_ctx,
        "class_specific": class_specific or None,
        "template": template,
        "region_set": region_set,
        "image_size": image_size,
        "resize_mode": resize,
    }
    config = choices.config(
        get_method(method), **{**defaults, **{k: v for k, v in given_model.items() if v is not None}}
    )
    manifest = train_run(
        data, out, backbone, arch, settings, config, method, device, progress=not quiet, val_abnormal=val_abnormal
    )
    for line in training_summary(out, method, manifest.result, RunFolder(out).prompts_path("best")):
        click.echo(line)
