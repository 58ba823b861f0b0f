"""``ppad pretrain``: CXR-CLIP pre-training of a dual-tower backbone on labelled films.

What learns: the heads, the logit scale and the image tower's tail (its last ``trained_stages``
stages and head convolution, ``DualTowerSpec``); the rest of both towers stays as the wheels ship
it. What stays frozen is run once and cached: for ``views`` augmented views per training film, the
feature map the tail starts from (float16) and the pooled frozen stages; a pool of label texts per
label set, encoded. An epoch then runs only the tail and the heads. Several labelled tables train
together, each drawn ``source_weights[i]`` times per film per epoch. Selection: zero-shot AUC
(``pneumonia`` vs ``normal`` prompts, as ``ppad``'s zeroshot method scores) on the first table's
``val`` split; every table's val AUC is reported beside it. The ``test`` split is never read.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ppad import __version__
from ppad.backbones.dual_tower import DualTowerBackbone, DualTowerSpec
from ppad.backbones.factory import PRETRAINED_FILE, save_dual_tower
from ppad.backbones.towers import get_tower, sha256_of
from ppad.errors import SettingsError
from ppad.io import write_json
from ppad.pretraining.data import CACHE_FILE, PretrainSettings, _cached_tower_outputs
from ppad.pretraining.films import films_digest, normal_films, read_films, source_name
from ppad.pretraining.loop import STATE_FILE, _train, source_weights
from ppad.pretraining.selection import validation_aucs
from ppad.pretraining.texts import texts_digest


def _tables(data: str | Path | Sequence[str | Path]) -> list[Path]:
    tables = [Path(data)] if isinstance(data, str | Path) else [Path(table) for table in data]
    names = [source_name(table) for table in tables]
    if len(set(names)) != len(names):
        raise SettingsError(f"--data tables need distinct names, got {names}")
    return tables


def pretrain(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    settings: PretrainSettings = PretrainSettings(),
    spec: DualTowerSpec = DualTowerSpec(),
    device: str = "cpu",
    progress: bool = True,
    normals: str | Path | None = None,
) -> dict:
    """Pre-train into ``out/backbone.safetensors`` (+ ``backbone.json``); resumable.

    ``data``: one labelled table or several (trained together, drawn by ``settings.source_weights``;
    the first one's val split selects the epoch). ``normals``: a detection data set whose training
    normals join the training films as ``No Finding`` (selection stays on the first table's val).
    """
    out, tables = Path(out), _tables(data)
    extra = normal_films(normals) if normals is not None else []
    films = [film for table in tables for film in read_films(table)] + extra
    backbone = DualTowerBackbone(spec).to(device)  # heads and tail trainable, the rest frozen
    sources = dict.fromkeys(f.source for f in films)
    digests = {source: films_digest([f for f in films if f.source == source]) for source in sources}
    # The memory's stages do not change what trains: a finished run re-run with other ones only rewrites.
    trained = {key: value for key, value in spec.to_dict().items() if key != "memory_stages"}
    identity = {"settings": settings.to_dict(), "spec": trained, "data_sha256": digests, "texts_sha256": texts_digest()}
    encoded = {key: settings.to_dict()[key] for key in ("views", "texts_per_label", "seed")}
    out.mkdir(parents=True, exist_ok=True)
    cache = _cached_tower_outputs(
        out / CACHE_FILE, {**identity, "settings": encoded}, backbone, films, settings, progress
    )
    history, best = _train(backbone, cache, settings, identity, out / STATE_FILE, progress)
    backbone.load_learned(best["learned"])
    weights = source_weights(settings, cache.sources)
    record = {
        "ppad_version": __version__,
        "command": sys.argv,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **identity,
        "spec": spec.to_dict(),
        "data": {
            "tables": [
                {
                    "name": source,
                    "source": str(Path(table).resolve()),
                    "weight": weights[index],
                    "train_films": int((cache.train_sources == index).sum()),
                    "val_films": int((cache.val_sources == index).sum()),
                }
                for index, (source, table) in enumerate(zip(cache.sources, [*tables, *([normals] if extra else [])]))
            ],
            "test_split": "never read",
            "label_sets": len(cache.label_sets),
        },
        "towers": {
            name: {"sha256": get_tower(name).sha256, "file": get_tower(name).weights_path().name}
            for name in (spec.image_tower, spec.text_tower)
        },
        "selection": f"epoch with the best zero-shot AUC (words prompts) on {cache.sources[0]}'s val split",
        "best_epoch": best["epoch"],
        "validation": validation_aucs(backbone, cache),
        "history": history,
    }
    save_dual_tower(backbone, out / PRETRAINED_FILE, record)
    record["weights_sha256"] = sha256_of(out / PRETRAINED_FILE)
    write_json(out / "manifest.json", record)
    return record
