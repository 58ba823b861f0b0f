"""Train a run folder end to end: index data, draw the few-shot split, load, fit, record."""

from __future__ import annotations

import logging
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ppad import __version__
from ppad.backbones import DEFAULT_BACKBONE, Backbone, load_backbone
from ppad.data import DatasetIndex, discover, draw_few_shot, load_images
from ppad.data.batches import validation_batch, with_real_abnormal
from ppad.data.val_abnormal import checked_real_abnormal
from ppad.errors import DataError, SettingsError
from ppad.methods.base import DetectorConfig, PromptDetector
from ppad.methods.defaults import default_detector
from ppad.methods.registry import get_method
from ppad.runs import RunFolder, RunIdentity, RunManifest
from ppad.synthesis import get_synthesis
from ppad.training.loop import TrainSettings, fit

log = logging.getLogger("ppad")


def software_versions() -> dict[str, str]:
    packages = ("torch", "open_clip_torch", "timm", "transformers", "numpy", "scipy", "scikit-image", "scikit-learn")
    return {"python": platform.python_version(), "ppad": __version__, **{name: version(name) for name in packages}}


def regions_record(model: PromptDetector) -> dict:
    """The region set a run used and, for an anatomical one, the segmenter that drew it."""
    record = {"set": model.regions.name, "sides": model.config.region_sides, "names": model.regions.names}
    if model.film_lungs is not None:
        segmenter = model.film_lungs.segmenter
        record["segmenter"] = {"weights": str(segmenter.source), "sha256": segmenter.fingerprint}
    return record


def train_run(
    data: str | Path | DatasetIndex,
    out: str | Path,
    backbone: str | Path | Backbone = DEFAULT_BACKBONE,
    architecture: str | None = None,
    settings: TrainSettings = TrainSettings(),
    config: DetectorConfig | None = None,
    method: str | None = None,
    device: str = "auto",
    progress: bool = True,
    val_abnormal: str | Path | None = None,
) -> RunManifest:
    """Train a method's prompts into ``out``; an interrupted run with the same settings is resumed.

    ``method`` defaults to the backbone's validated default (:func:`~ppad.methods.defaults.default_detector`:
    ``patch-knn`` on ``cxr-lite``, ``ppad`` on a CLIP) with its settings; ``config`` to the method's own
    defaults (see :data:`ppad.methods.METHODS`).

    Model selection uses only the validation split: held-out training normals, each also with
    an anomaly from ``settings.synthesis``. The test split is never read here. ``val_abnormal``
    (a folder or CSV of real abnormal films, none of them in the test split, the support or the
    held-out normals) joins the split: the epoch, the calibration and a fusion weight are then
    chosen on the held-out normals against those films (:meth:`SyntheticBatch.choice_rows`).
    """
    run = RunFolder(out)
    if method is None:
        default = default_detector(backbone if isinstance(backbone, str | Path) else backbone.source)
        method = default.method
        if config is not None and type(config) is not type(get_method(method).defaults):
            raise SettingsError(f"a {type(config).__name__} is not {method}'s: name its method (method=...)")
        config = config or get_method(method).config(**default.overrides())
    spec = get_method(method)
    config = config or spec.defaults
    index = data if isinstance(data, DatasetIndex) else discover(data)
    split = draw_few_shot(index.train_normals, settings.shots, settings.validation_size, settings.seed)
    drawn = split.to_dict()
    real_films = None if val_abnormal is None else checked_real_abnormal(val_abnormal, index, split)
    if real_films:
        drawn["val_abnormal"] = [str(path) for path in real_films.files]
    with tqdm(total=1, desc="loading backbone", unit="model", disable=not progress, leave=False) as bar:
        loaded = load_backbone(backbone, architecture, device) if isinstance(backbone, str | Path) else backbone
        torch.manual_seed(settings.seed)  # prompt initialisation
        model = spec.build(loaded, config)
        fingerprint = model.backbone.fingerprint
        bar.update()
    identity = RunIdentity(method, settings.to_dict(), config.to_dict(), fingerprint, drawn)
    defaults = {"settings": TrainSettings().to_dict(), "model": spec.defaults.to_dict()}
    previous = run.previous_manifest(identity, defaults)
    if previous is not None and previous.result is not None and run.prompts_path("best").is_file():
        log.info("%s already holds this run, finished: nothing to do", out)
        return previous

    support = load_images(split.support, model.preprocessing, "reading support set", progress)
    held_out = load_images(split.validation, model.preprocessing, "reading validation normals", progress)
    real = load_images(
        real_films.files if real_films else [], model.preprocessing, "reading real abnormal films", progress
    )
    unreadable = support.failures + held_out.failures + real.failures
    for failure in unreadable:
        log.warning("skipped unreadable image %s", failure)
    if not support.paths:
        raise DataError("none of the support images could be read")
    if real_films and not real.paths:
        raise DataError(f"none of the --val-abnormal films in {real_films.source} could be read")
    validation = None
    if held_out.paths:
        task = get_synthesis(settings.synthesis, sources=support.images)
        validation = validation_batch(held_out.images, model.region_masks(held_out.images), task, settings.seed)
        if real.paths:
            validation = with_real_abnormal(validation, real.images, model.region_masks(real.images))
        if validation.labels.min() == validation.labels.max():
            log.warning("synthesis %r changed no validation image: the last epoch is kept", settings.synthesis)
            validation = None
    else:
        log.warning("no held-out normals for validation: the last epoch is kept (add normals beyond --shots)")
    validated = {
        "normals": len(held_out.paths),
        "synthetic_anomalies": int(validation.synthetic_rows().labels.sum()) if validation is not None else 0,
        "source": f"held-out training normals + {settings.synthesis} anomalies on them (never the test split)",
        "chosen_on": validation.compared() if validation is not None else None,
    }
    if real_films:
        validated["real_abnormal"] = real_films.record(real.paths)
        validated["source"] += f", + real abnormal films from {real_films.source} (synthetic ones then not chosen on)"

    manifest = RunManifest(
        identity,
        {
            "ppad_version": __version__,
            "command": sys.argv,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "device": str(model.device),
            "backbone": {"source": model.backbone.source, "architecture": model.backbone.architecture.name},
            "data": index.summary(),
            "validation": validated,
            "regions": regions_record(model),
            "unreadable": [{"path": str(f.path), "error": f.problem} for f in unreadable],
            "versions": software_versions(),
        },
    )
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_config(model, method)
    run.write_manifest(manifest)
    result = fit(model, support.images, validation, settings, run, progress)
    if validation is None and "calibrated_on" in result["calibration"]:
        log.warning("no validation split, so calibrated on the support: %s", result["calibration"]["calibrated_on"])
    manifest.record.update(result=result, finished=datetime.now(UTC).isoformat(timespec="seconds"))
    run.write_manifest(manifest)
    return manifest
