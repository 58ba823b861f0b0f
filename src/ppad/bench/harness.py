"""The reproduction harness: methods × syntheses × seeds on one backbone and data set.

Each cell is an ordinary run folder (train → evaluate), so a finished cell is never recomputed
and can be inspected or re-scored with the usual commands. Model selection inside a cell uses
only its validation split; the test split is read once per cell, at the end.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ppad.backbones import Backbone, load_backbone
from ppad.data import DatasetIndex, discover
from ppad.io import write_json
from ppad.methods import get_method
from ppad.runs import RunFolder
from ppad.runs.records import as_stored
from ppad.scoring.evaluation import evaluate_run
from ppad.training import TrainSettings, train_run

METRICS = ("acc", "auc", "f1", "ap")
MEMORY_SUFFIX = "+knn"
ABLATIONS: dict[str, dict[str, list[str]]] = {
    # Table 3: which prompt parts matter
    "prompts": {"methods": ["coop", "ppad-text", "ppad"], "syntheses": ["sas"]},
    # Table 4: which anomaly synthesis trains PPAD best
    "synthesis": {"methods": ["ppad"], "syntheses": ["sas", "fpi", "pii", "cutpaste", "anatpaste", "mediclip"]},
}


@dataclass(frozen=True)
class Cell:
    method: str
    synthesis: str
    seed: int

    def row(self, by_synthesis: bool) -> str:
        return f"{self.method} + {self.synthesis}" if by_synthesis else self.method

    @property
    def folder(self) -> str:
        return f"{self.method}__{self.synthesis}/seed{self.seed}"


def plan(methods: list[str], syntheses: list[str], seeds: list[int]) -> list[Cell]:
    for method in methods:
        get_method(method)  # unknown names fail before any work
    return [Cell(m, s, seed) for m in methods for s in syntheses for seed in seeds]


def run_cell(
    cell: Cell, index: DatasetIndex, out: Path, backbone: Backbone, settings: TrainSettings, progress: bool
) -> dict:
    """Train and evaluate one cell. A finished cell with the same settings is reused; one made
    with other settings is refused (:class:`RunConflictError`), never silently reused."""
    run = RunFolder(out / "runs" / cell.folder)
    cell_settings = replace(settings, seed=cell.seed, synthesis=cell.synthesis)
    warm_start_from_base(cell, out, run, cell_settings, backbone)
    train_run(index, run.root, backbone, settings=cell_settings, method=cell.method, progress=progress)
    metrics_path = run.metrics_path()
    if not metrics_path.is_file() or metrics_path.stat().st_mtime < run.manifest_path.stat().st_mtime:
        evaluate_run(run.root, index, backbone=backbone, device=backbone.device, progress=progress)
    return run.read_metrics()


def warm_start_from_base(cell: Cell, out: Path, run: RunFolder, settings: TrainSettings, backbone: Backbone) -> bool:
    """A ``<method>+knn`` cell trains exactly as its ``<method>`` cell does (same seed, draws and
    initialisation; the memory learns nothing by gradient), so a finished base cell's training
    state is copied in and only the memory is fitted. Returns whether it was."""
    base_method = cell.method.removesuffix(MEMORY_SUFFIX)
    base = RunFolder(out / "runs" / Cell(base_method, cell.synthesis, cell.seed).folder)
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


def summarize(cells: list[Cell], documents: list[dict], by_synthesis: bool) -> list[dict]:
    """Mean ± sample std (in percent) per row, in plan order."""
    rows: dict[str, list[dict]] = {}
    for cell, document in zip(cells, documents):
        rows.setdefault(cell.row(by_synthesis), []).append(document["metrics"])
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
    syntheses: list[str] = ("sas",),
    settings: TrainSettings = TrainSettings(),
    architecture: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """Run every cell (skipping finished ones) and write ``results.json``, ``table.md``, ``roc.png``."""
    from ppad.bench.roc import plot_roc_curves

    out = Path(out)
    index = discover(data)
    cells = plan(list(methods), list(syntheses), list(seeds))
    loaded = load_backbone(backbone, architecture, device)
    documents = [
        run_cell(cell, index, out, loaded, settings, progress=False)
        for cell in tqdm(cells, desc="bench", unit="run", disable=not progress)
    ]
    by_synthesis = len(set(syntheses)) > 1
    summary = summarize(cells, documents, by_synthesis)
    results = {
        "data": index.summary(),
        "backbone": {
            "source": loaded.source,
            "architecture": loaded.architecture.name,
            "fingerprint": loaded.fingerprint,
        },
        "settings": settings.to_dict(),
        "seeds": list(seeds),
        "summary": summary,
        "runs": [
            {
                "row": cell.row(by_synthesis),
                "method": cell.method,
                "synthesis": cell.synthesis,
                "seed": cell.seed,
                "folder": str(out / "runs" / cell.folder),
                "metrics": doc["metrics"],
            }
            for cell, doc in zip(cells, documents)
        ],
    }
    write_json(out / "results.json", results)
    (out / "table.md").write_text(markdown_table(summary))
    plot_roc_curves(out / "roc.png", [(cell.row(by_synthesis), doc) for cell, doc in zip(cells, documents)])
    return results
