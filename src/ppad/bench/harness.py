"""The reproduction harness: methods × syntheses × presets × seeds on one backbone and data set.

Each cell is an ordinary run folder (train → evaluate), so a finished cell is never recomputed
and can be inspected or re-scored with the usual commands. Model selection inside a cell uses
only its validation split; the test split is read once per cell, at the end.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ppad.backbones import Backbone, FeatureCache, load_backbone
from ppad.data import DatasetIndex, discover
from ppad.data.fewshot import check_pool_size
from ppad.io import write_json
from ppad.methods import get_method
from ppad.methods.presets import PPAD, ChoiceSet, Preset, preset_ablation, preset_for
from ppad.runs import RunFolder
from ppad.runs.records import as_stored
from ppad.scoring.evaluation import evaluate_run
from ppad.training import TrainSettings, train_run

METRICS = ("acc", "auc", "f1", "ap")
MEMORY_SUFFIX = "+knn"


@dataclass(frozen=True)
class Ablation:
    """Rows of a paper-style table: methods × syntheses × presets (no syntheses: each preset's own)."""

    methods: tuple[str, ...]
    syntheses: tuple[str, ...] | None
    presets: tuple[Preset, ...] | None = None  # None: the preset the command was given


ABLATIONS: dict[str, Ablation] = {
    # Table 3: which prompt parts matter
    "prompts": Ablation(("coop", "ppad-text", "ppad"), None),
    # Table 4: which anomaly synthesis trains PPAD best
    "synthesis": Ablation(("ppad",), ("sas", "fpi", "pii", "cutpaste", "anatpaste", "mediclip")),
    # issue 10: ppad's choices, each of the authors' alone, all of the authors'
    "preset": Ablation(("ppad",), None, tuple(preset_ablation())),
}


@dataclass(frozen=True)
class Cell:
    method: str
    synthesis: str
    seed: int
    preset: ChoiceSet = PPAD

    def row(self, by_synthesis: bool, by_preset: bool = False) -> str:
        row = f"{self.method} + {self.synthesis}" if by_synthesis else self.method
        return f"{row} [{self.preset.name}]" if by_preset else row

    @property
    def folder(self) -> str:
        variant = "" if self.preset.name == PPAD.name else f"__{self.preset.name}"
        return f"{self.method}__{self.synthesis}{variant}/seed{self.seed}"


def plan(
    methods: Sequence[str], syntheses: Sequence[str] | None, seeds: Sequence[int], presets: Sequence[Preset] = (PPAD,)
) -> list[Cell]:
    """Every cell in table order; ``syntheses=None`` takes each preset's own synthesis. A method
    of another family (MediCLIP) takes its family's preset of the same name."""
    for method in methods:
        get_method(method)  # unknown names fail before any work
    return [
        Cell(m, s, seed, preset)
        for m in methods
        for preset in dict.fromkeys(preset_for(m, p) for p in presets)
        for s in (syntheses or [preset.synthesis])
        for seed in seeds
    ]


def run_cell(
    cell: Cell,
    index: DatasetIndex,
    out: Path,
    backbone: Backbone,
    settings: TrainSettings,
    progress: bool,
    region_set: str | None = None,
    given: Mapping[str, Any] = {},
) -> dict:
    """Train and evaluate one cell (``region_set``: every method's positions, None = its own;
    ``given``: choices the command line set, over every preset's: schedule and model settings). A
    finished cell with the same settings is reused; one made with other settings is refused
    (:class:`RunConflictError`), never silently reused."""
    run = RunFolder(out / "runs" / cell.folder)
    schedule = {k: v for k, v in given.items() if k in {f.name for f in fields(TrainSettings)}}
    cell_settings = replace(cell.preset.settings(settings), **schedule, seed=cell.seed, synthesis=cell.synthesis)
    model_given = {k: v for k, v in given.items() if k not in schedule}
    config = cell.preset.config(get_method(cell.method), region_set=region_set, **model_given)
    warm_start_from_base(cell, out, run, cell_settings, backbone)
    train_run(index, run.root, backbone, settings=cell_settings, config=config, method=cell.method, progress=progress)
    metrics_path = run.metrics_path()
    if not metrics_path.is_file() or metrics_path.stat().st_mtime < run.manifest_path.stat().st_mtime:
        evaluate_run(run.root, index, backbone=backbone, device=backbone.device, progress=progress)
    return run.read_metrics()


def warm_start_from_base(cell: Cell, out: Path, run: RunFolder, settings: TrainSettings, backbone: Backbone) -> bool:
    """A ``<method>+knn`` cell trains exactly as its ``<method>`` cell does (same seed, draws and
    initialisation; the memory learns nothing by gradient), so a finished base cell's training
    state is copied in and only the memory is fitted. Returns whether it was."""
    base_method = cell.method.removesuffix(MEMORY_SUFFIX)
    base = RunFolder(out / "runs" / replace(cell, method=base_method).folder)
    if base_method == cell.method or run.state_path.exists() or not base.state_path.is_file():
        return False
    if get_method(base_method).defaults != get_method(cell.method).defaults:
        return False
    identity = base.read_manifest().identity
    if identity.settings != as_stored(settings.to_dict()) or identity.backbone_fingerprint != backbone.fingerprint:
        return False
    run.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base.state_path, run.state_path)
    return True


def summarize(cells: list[Cell], documents: list[dict], by_synthesis: bool, by_preset: bool = False) -> list[dict]:
    """Mean ± sample std (in percent) per row, in plan order."""
    rows: dict[str, list[dict]] = {}
    for cell, document in zip(cells, documents):
        rows.setdefault(cell.row(by_synthesis, by_preset), []).append(document["metrics"])
    summary = []
    for name, runs in rows.items():
        entry = {"row": name, "runs": len(runs)}
        for metric in METRICS:
            values = np.array([run[metric] for run in runs]) * 100
            entry[metric] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        summary.append(entry)
    return summary


def markdown_table(summary: list[dict]) -> str:
    """The paper's layout: one row per method, ACC / AUC / F1 / AP as mean ± std (percent)."""
    lines = ["| Method | ACC | AUC | F1 | AP |", "| --- | --- | --- | --- | --- |"]
    for entry in summary:
        cells = [f"{entry[m]['mean']:.1f} ± {entry[m]['std']:.1f}" for m in METRICS]
        lines.append(f"| {entry['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_bench(
    data: str | Path,
    out: str | Path,
    backbone: str | Path,
    methods: list[str],
    seeds: list[int],
    syntheses: Sequence[str] | None = ("sas",),
    settings: TrainSettings = TrainSettings(),
    architecture: str | None = None,
    device: str = "auto",
    progress: bool = True,
    presets: Sequence[Preset] = (PPAD,),
    cache_features: bool = True,
    region_set: str | None = None,
    given: Mapping[str, Any] = {},
) -> dict:
    """Run every cell (skipping finished ones) and write ``results.json``, ``table.md``, ``roc.png``.

    ``presets``: the choice sets to compare (one row each when several; a MediCLIP method takes
    its family's preset of the same name); ``syntheses=None`` trains each preset with its own
    synthesis. ``given``: choices the command line set, applied over every cell's preset.
    ``region_set``: every method's positions (``"lungs"``: each film's lung fields; None: each
    method's own). ``cache_features``: compute each frozen tower
    output once for the whole table (:class:`FeatureCache`); off, every cell runs the tower itself.
    """
    from ppad.bench.roc import plot_roc_curves

    out = Path(out)
    index = discover(data)
    check_pool_size(len(index.train_normals), settings.shots, settings.validation_size)  # before the backbone loads
    cells = plan(methods, syntheses, seeds, presets)
    # Every cell encodes the same test films (and a fused cell what its base cell encoded):
    # frozen tower outputs are computed once for the whole table.
    loaded = load_backbone(backbone, architecture, device)
    if cache_features:
        loaded = FeatureCache(loaded)
    documents = [
        run_cell(cell, index, out, loaded, settings, progress=False, region_set=region_set, given=given)
        for cell in tqdm(cells, desc="bench", unit="run", disable=not progress)
    ]
    by_synthesis = syntheses is not None and len(set(syntheses)) > 1
    by_preset = len(presets) > 1
    summary = summarize(cells, documents, by_synthesis, by_preset)
    results = {
        "data": index.summary(),
        "backbone": {
            "source": loaded.source,
            "architecture": loaded.architecture.name,
            "fingerprint": loaded.fingerprint,
        },
        "feature_cache": loaded.stats() if cache_features else None,
        "settings": settings.to_dict(),
        "region_set": region_set,
        "seeds": list(seeds),
        "summary": summary,
        "runs": [
            {
                "row": cell.row(by_synthesis, by_preset),
                "method": cell.method,
                "synthesis": cell.synthesis,
                "preset": {"name": cell.preset.name, **cell.preset.choices()},
                "seed": cell.seed,
                "folder": str(out / "runs" / cell.folder),
                "metrics": doc["metrics"],
            }
            for cell, doc in zip(cells, documents)
        ],
    }
    write_json(out / "results.json", results)
    (out / "table.md").write_text(markdown_table(summary))
    plot_roc_curves(out / "roc.png", [(cell.row(by_synthesis, by_preset), doc) for cell, doc in zip(cells, documents)])
    return results
