"""``ppad pretrain``: CXR-CLIP pre-training of a dual-tower backbone on films with labels, reports or both.

What learns: the heads, the logit scale and the image tower's tail (its last ``trained_stages``
stages and head convolution, ``DualTowerSpec``); the rest of both towers stays as the wheels ship
it. What stays frozen is run once and cached on disk (:mod:`ppad.pretraining.data`): for ``views``
augmented views per training film, the feature map the tail starts from (float16) and the pooled
frozen stages; ``text_pairs`` encoded text pairs per report or label set. An epoch then runs only
the tail and the heads. Several tables train together, each drawn ``source_weights[i]`` times per
study per epoch. Selection: zero-shot AUC (``pneumonia`` vs ``normal`` prompts, as ``ppad``'s
zeroshot method scores) on the first table's ``val`` split; every table's val AUC is reported beside
it. The ``test`` split is never read. Several processes (:mod:`ppad.pretraining.distributed`) share
the encoding and each global batch; rank 0 alone validates and writes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ppad import __version__
from ppad.backbones.dual_tower import DualTowerBackbone, DualTowerSpec
from ppad.backbones.factory import PRETRAINED_FILE, save_dual_tower
from ppad.backbones.towers import get_tower, sha256_of
from ppad.errors import SettingsError
from ppad.io import write_json
from ppad.pretraining.data import CACHE_FOLDER, Cache, PretrainSettings, cached_tower_outputs
from ppad.pretraining.distributed import Ranks
from ppad.pretraining.films import Table, films_digest, normal_films, read_table, source_name
from ppad.pretraining.loop import STATE_FILE, _train, resumable_state, source_weights, study_members
from ppad.pretraining.rows import map_large_blocks
from ppad.pretraining.selection import validation_aucs
from ppad.pretraining.texts import texts_digest


def _tables(data: str | Path | Sequence[str | Path]) -> list[Path]:
    tables = [Path(data)] if isinstance(data, str | Path) else [Path(table) for table in data]
    names = [source_name(table) for table in tables]
    if len(set(names)) != len(names):
        raise SettingsError(f"--data tables need distinct names, got {names}")
    return tables


def _table_record(
    name: str, source: Path, table: Table, weight: float, cache: Cache, members: list[np.ndarray], index: int
) -> dict:
    """What one table gave: its columns, films, reports, studies (``members``: every study's films)
    and label-only rows."""
    layout = cache.layout
    mine = (layout.film_sources == index) & cache.film_ok
    train = [film for film, keep in zip(layout.train, mine) if keep]
    studies = [m for m in members if len(m) and layout.film_sources[m[0]] == index]
    return {
        "name": name,
        "source": str(Path(source).resolve()),
        "columns": table.columns,
        "weight": weight,
        "train_films": len(train),
        "val_films": int(((layout.val_sources == index) & cache.val_ok).sum()),
        "report_films": sum(1 for film in train if film.sections),
        "label_only_films": sum(1 for film in train if not film.sections),
        "reports": len({film.sections for film in train if film.sections}),
        "studies": len(studies),
        "multi_film_studies": sum(1 for m in studies if len(m) > 1),
    }


def pretrain(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    settings: PretrainSettings = PretrainSettings(),
    spec: DualTowerSpec = DualTowerSpec(),
    device: str = "cpu",
    progress: bool = True,
    normals: str | Path | None = None,
    ranks: Ranks = Ranks(),
    workers: int = 0,
) -> dict | None:
    """Pre-train into ``out/backbone.safetensors`` (+ ``backbone.json``); resumable.

    ``data``: one table or several (trained together, drawn by ``settings.source_weights``; the
    first one's val split selects the epoch). ``normals``: a detection data set whose training
    normals join the training films as ``No Finding`` (selection stays on the first table's val).
    ``ranks``: this process among several (:func:`ppad.pretraining.distributed.join`); the record
    is returned on rank 0, None elsewhere.
    """
    map_large_blocks()
    out, paths = Path(out), _tables(data)
    tables = [read_table(path) for path in paths]
    if normals is not None:
        paths.append(Path(normals))
        tables.append(Table(normal_films(normals), {"labels": "normal folders", "text": [], "study": None}))
    films = [film for table in tables for film in table.films]
    backbone = DualTowerBackbone(spec).to(device)  # heads and tail trainable, the rest frozen
    sources = dict.fromkeys(f.source for f in films)
    digests = {source: films_digest([f for f in films if f.source == source]) for source in sources}
    # The memory's stages do not change what trains: a finished run re-run with other ones only rewrites.
    trained = {key: value for key, value in spec.to_dict().items() if key != "memory_stages"}
    identity = {"settings": settings.to_dict(), "spec": trained, "data_sha256": digests, "texts_sha256": texts_digest()}
    encoded = {key: settings.to_dict()[key] for key in ("views", "text_pairs", "seed")}
    resumed = resumable_state(out / STATE_FILE, identity)
    out.mkdir(parents=True, exist_ok=True)
    cache = cached_tower_outputs(
        out / CACHE_FOLDER, {**identity, "settings": encoded}, backbone, films, settings, ranks, progress
    )
    history, best = _train(backbone, cache, settings, identity, out / STATE_FILE, progress, ranks, workers, resumed)
    if not ranks.main:
        return None
    backbone.load_learned(best["learned"])
    weights, members = source_weights(settings, cache.sources), study_members(cache)
    record = {
        "ppad_version": __version__,
        "command": sys.argv,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **identity,
        "spec": spec.to_dict(),
        "processes": {"count": ranks.world, "nodes": ranks.nodes, "backend": ranks.backend or "none", "device": device},
        "data": {
            "tables": [
                _table_record(source, path, table, weights[index], cache, members, index)
                for index, (source, path, table) in enumerate(zip(cache.sources, paths, tables))
            ],
            "test_split": "never read",
            "text_sources": len(cache.layout.text_keys),
            "mixed_text_studies": cache.layout.mixed_text_studies,
            "epoch_draws": "studies (a film without a study is a study of its own)",
        },
        "towers": {
            name: {"sha256": get_tower(name).sha256, "file": get_tower(name).weights_path().name}
            for name in (spec.image_tower, spec.text_tower)
        },
        "selection": f"epoch with the best zero-shot AUC (words prompts) on {cache.sources[0]}'s val split",
        "encoding_seconds": cache.encoding_seconds,
        "best_epoch": best["epoch"],
        "validation": validation_aucs(backbone, cache),
        "history": history,
    }
    save_dual_tower(backbone, out / PRETRAINED_FILE, record)
    record["weights_sha256"] = sha256_of(out / PRETRAINED_FILE)
    write_json(out / "manifest.json", record)
    return record
