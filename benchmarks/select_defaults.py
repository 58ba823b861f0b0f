"""Choose the shipped backbone's default detector on validation data only, never a test split (issue 26).

Run: python benchmarks/select_defaults.py [--backbone cxr-lite] [--json OUT.json] [--record]

Every candidate (method × region set × memory options) is scored in three settings, each with its
known shortcut named (the data README) and blunted where it can be:

* ``nih`` — NIH ChestX-ray8 ``train`` only: 64 ``train`` normals in the memory per draw; validation =
  the other ``train`` normals + the ``train`` pneumonia films. Views differ by class (normals mostly
  AP), so the setting's AUC is the mean of the AUCs *within* AP and within PA films.
* ``pool`` — ``cxr-pool`` ``val``, COVID-19 vs normal (at most ``--pool-films`` of each, a fixed draw);
  64 pool ``train`` normals in the memory per draw. The two classes come from different hospitals.
* ``zhanglab`` — ZhangLab validation as ``ppad train`` draws it (64 support normals, 64 held-out
  train normals), each held-out normal also with an anomaly from each of :data:`SYNTHESES`, placed
  inside the film's lung fields; the setting's AUC is the mean over the syntheses. Synthetic.

5 draws (seeds 0–4) per setting. NIH's ``val`` and ``test`` films, the pool's ``train`` abnormal films
and ZhangLab's test split are never read.

The rule (committed before any test number was read):
1. A candidate's score in a setting is its mean AUC over the draws.
2. Floor: a candidate below :data:`FLOOR` in any setting is out (no setting may be given up).
3. The default is the candidate with the best mean rank over the three settings (rank 1 = best AUC
   in that setting); ties go to the higher mean AUC over the settings.
No setting decides alone: the rank treats the three alike, and the floor keeps a candidate from
winning on two shortcuts while failing the third.

``--record`` writes the chosen default into the backbone's JSON record (what ``ppad train`` reads);
``--record-from OUT.json`` records the choice of an earlier ``--json`` run without running again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from ppad.backbones import load_backbone
from ppad.backbones.factory import SHIPPED_DIR
from ppad.data import discover, draw_few_shot, load_images
from ppad.data.batches import validation_batch
from ppad.methods import get_method
from ppad.methods.patch_memory import aggregate_locally, greedy_coreset, inside_patches, nearest_distances, top_k_mean
from ppad.pretraining import read_films
from ppad.synthesis import get_synthesis

SHOTS = 64
FLOOR = 0.55
SYNTHESES = ("sas", "fpi", "cutpaste", "gaussian-intensity", "source", "sink")
DENSE_LAYERS = (2, 3, 4)  # every layer a candidate reads, computed once per film
#: patch-memory options: (layers, window, region sets); the whole film (3× the patches of the lung
#: fields, the dearest to search) only with the method's first-guess features
FEATURES = (
    ((2, 3), 3, ("lungs", "whole")),
    ((2, 3), 1, ("lungs",)),
    ((3,), 3, ("lungs",)),
    ((2, 3, 4), 3, ("lungs",)),
)
TOP_K = (1, 10, 50)
REGION_SETS = ("lungs", "whole")
BANK_SIZE = 4096
BATCH = 32


@dataclass
class Films:
    """One set of films, read once: the dense maps a patch memory reads, the pooled memory
    descriptors (whole film and lung fields), the zero-shot score, the lung-field weights."""

    maps: dict[int, torch.Tensor] = field(default_factory=dict)  # layer → [N, C, h, w]
    lungs: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # [N, 1, g, g] on the finest grid
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)  # region set → [N, F]
    zeroshot: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # [N]

    def __len__(self) -> int:
        return len(self.lungs)

    def take(self, rows: np.ndarray) -> Films:
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        return Films(
            {k: v[rows_t] for k, v in self.maps.items()},
            self.lungs[rows_t],
            {k: v[rows_t] for k, v in self.pooled.items()},
            self.zeroshot[rows_t],
        )

    @staticmethod
    def join(parts: list[Films]) -> Films:
        return Films(
            {k: torch.cat([p.maps[k] for p in parts]) for k in parts[0].maps},
            torch.cat([p.lungs for p in parts]),
            {k: torch.cat([p.pooled[k] for p in parts]) for k in parts[0].pooled},
            torch.cat([p.zeroshot for p in parts]),
        )


class Reader:
    """Reads films into :class:`Films` with one backbone (each film through the tower once)."""

    def __init__(self, backbone_name: str) -> None:
        self.backbone = load_backbone(backbone_name)
        knn, zeroshot = get_method("knn"), get_method("zeroshot")
        self.lung_model = knn.build(self.backbone, knn.config(region_set="lungs"))  # segments, pools the lungs
        self.zeroshot = zeroshot.build(self.backbone)
        self.preprocessing = self.lung_model.preprocessing

    def load(self, paths: list[Path], desc: str) -> np.ndarray:
        return load_images(paths, self.preprocessing, desc, progress=True).images

    @torch.no_grad()
    def read(self, images: np.ndarray, desc: str) -> Films:
        parts = []
        with self.zeroshot.inference():
            for start in tqdm(range(0, len(images), BATCH), desc=desc, unit="batch", leave=False):
                x = self.preprocessing.normalize(torch.from_numpy(images[start : start + BATCH]))
                maps = self.backbone.dense_features(x, DENSE_LAYERS)
                grid = maps[0].shape[-2:]
                pool = self.lung_model.film_pool(x)
                parts.append(
                    Films(
                        dict(zip(DENSE_LAYERS, maps)),
                        F.adaptive_avg_pool2d(pool, grid),
                        {
                            "lungs": self.backbone.memory_features(x, pool),
                            "whole": self.backbone.memory_features(x, None),
                        },
                        torch.from_numpy(self.zeroshot.aggregate(self.zeroshot.view_probabilities(x).numpy())).float(),
                    )
                )
        return Films.join(parts)


@dataclass
class Episode:
    """One draw of one setting: support normals, validation films, labels, and how AUC is taken."""

    support: Films
    validation: Films
    labels: np.ndarray
    groups: dict[str, np.ndarray]  # AUC within each group, averaged (e.g. views, syntheses)


def setting_auc(episode: Episode, scores: np.ndarray) -> float:
    """Mean AUC over the episode's groups (films of a group + every normal where a group holds abnormals only)."""
    aucs = []
    for rows in episode.groups.values():
        labels = episode.labels[rows]
        if 0 < labels.sum() < len(labels):
            aucs.append(roc_auc_score(labels, scores[rows]))
    return float(np.mean(aucs))


def patch_features(films: Films, layers: tuple[int, ...], window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, g·g, C] local features, [N, 1, g, g] lung weights on their grid) of ``films``."""
    chunks = [
        aggregate_locally([films.maps[layer][i : i + BATCH] for layer in layers], window)
        for i in range(0, len(films), BATCH)
    ]
    features = torch.cat(chunks)
    lungs = F.adaptive_avg_pool2d(films.lungs, features.shape[-2:])
    return features.flatten(2).transpose(1, 2), lungs


def patch_candidates(episode: Episode, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """Every patch-memory candidate's film scores on the episode's validation films. Only the
    locations inside the region are searched: the film score reads no other."""
    for layers, window, region_sets in FEATURES:
        support, support_lungs = patch_features(episode.support, layers, window)
        validation, validation_lungs = patch_features(episode.validation, layers, window)
        grid = support_lungs.shape[-2:]
        for region_set in region_sets:

            def inside(lungs: torch.Tensor, count: int) -> torch.Tensor:
                return inside_patches(lungs if region_set == "lungs" else None, grid, count)  # noqa: B023

            rows = support[inside(support_lungs, len(support))]
            bank = rows[greedy_coreset(rows, BANK_SIZE, seed)]
            where = inside(validation_lungs, len(validation))
            distances = torch.zeros(where.shape)
            for i in range(0, len(validation), BATCH):
                part = where[i : i + BATCH]
                distances[i : i + BATCH][part] = nearest_distances(validation[i : i + BATCH][part], bank)
            for k in TOP_K:
                name = f"patch-knn {region_set} layers={','.join(map(str, layers))} window={window} top_k={k}"
                yield name, top_k_mean(distances, where, k).numpy()


def pooled_candidates(episode: Episode) -> Iterator[tuple[str, np.ndarray]]:
    for region_set in REGION_SETS:
        bank = episode.support.pooled[region_set]
        yield f"knn {region_set}", (1 - (episode.validation.pooled[region_set] @ bank.T).amax(dim=1)).numpy()
    yield "zeroshot", episode.validation.zeroshot.numpy()


def nih_episodes(reader: Reader, root: Path, draws: int, shots: int, limit: int | None) -> Iterator[Episode]:
    films = [f for f in read_films(root) if f.split == "train" and (not f.findings or "Pneumonia" in f.findings)]
    films = films if limit is None else [*films[:limit], *[f for f in films if f.findings][:limit]]
    images = reader.read(reader.load([f.path for f in films], "NIH train"), "NIH train: features")
    labels = np.array([int(bool(f.findings)) for f in films])
    views = np.array([f.view for f in films])
    for seed in range(draws):
        support = np.random.default_rng(seed).choice(np.flatnonzero(labels == 0), shots, replace=False)
        rest = np.setdiff1d(np.arange(len(films)), support)
        groups = {view: np.flatnonzero(views[rest] == view) for view in ("AP", "PA")}
        yield Episode(images.take(support), images.take(rest), labels[rest], groups)


def pool_episodes(reader: Reader, root: Path, draws: int, shots: int, per_class: int) -> Iterator[Episode]:
    films = read_films(root)
    rng = np.random.default_rng(0)
    normals = [f for f in films if f.split == "train" and not f.findings]
    normals = [normals[i] for i in rng.choice(len(normals), min(len(normals), shots * draws), replace=False)]
    val = []
    for abnormal in (False, True):
        pool = [f for f in films if f.split == "val" and bool(f.findings) == abnormal]
        val += [pool[i] for i in sorted(rng.choice(len(pool), min(len(pool), per_class), replace=False))]
    support_films = reader.read(reader.load([f.path for f in normals], "pool train normals"), "pool: features")
    val_films = reader.read(reader.load([f.path for f in val], "pool val"), "pool val: features")
    labels = np.array([int(bool(f.findings)) for f in val])
    for seed in range(draws):
        support = np.random.default_rng(seed).choice(len(normals), min(shots, len(normals)), replace=False)
        yield Episode(support_films.take(support), val_films, labels, {"all": np.arange(len(val))})


def zhanglab_episodes(
    reader: Reader, root: Path, draws: int, shots: int, held_out: int, syntheses: tuple[str, ...]
) -> Iterator[Episode]:
    index = discover(root)
    for seed in range(draws):
        split = draw_few_shot(index.train_normals, shots, held_out, seed)
        support = reader.load(split.support, f"ZhangLab support, draw {seed}")
        normals = reader.load(split.validation, f"ZhangLab held-out normals, draw {seed}")
        regions = reader.lung_model.region_masks(normals)
        anomalies = []
        for name in syntheses:
            batch = validation_batch(normals, regions, get_synthesis(name, sources=support), seed)
            anomalies.append(batch.images[batch.labels == 1])
        images = np.concatenate([normals, *anomalies])
        labels = np.repeat([0, *[1] * len(anomalies)], [len(normals), *map(len, anomalies)])
        starts = np.cumsum([len(normals), *map(len, anomalies)])[:-1]
        groups = {
            name: np.concatenate([np.arange(len(normals)), np.arange(start, start + len(a))])
            for name, start, a in zip(syntheses, starts, anomalies)
        }
        yield Episode(
            reader.read(support, "ZhangLab support: features"),
            reader.read(images, "ZhangLab validation: features"),
            labels,
            groups,
        )


def score_setting(episodes: Iterator[Episode]) -> dict[str, list[float]]:
    """Each candidate's setting AUC per draw."""
    results: dict[str, list[float]] = {}
    for seed, episode in enumerate(tqdm(episodes, desc="draws", unit="draw", leave=False)):
        scored: list[tuple[str, np.ndarray]] = [*pooled_candidates(episode), *patch_candidates(episode, seed)]
        for name, scores in scored:
            results.setdefault(name, []).append(setting_auc(episode, scores))
    return results


def choose(table: dict[str, dict[str, list[float]]]) -> tuple[str, dict[str, dict]]:
    """The rule of the module docstring: floor, then mean rank, then mean AUC."""
    settings = list(table)
    candidates = list(table[settings[0]])
    means = {c: {s: float(np.mean(table[s][c])) for s in settings} for c in candidates}
    ranks = {c: {} for c in candidates}
    for s in settings:
        order = sorted(candidates, key=lambda c: -means[c][s])
        for rank, c in enumerate(order, start=1):
            ranks[c][s] = rank
    summary = {
        c: {
            "auc": means[c],
            "auc_std": {s: float(np.std(table[s][c], ddof=1)) if len(table[s][c]) > 1 else 0.0 for s in settings},
            "mean_rank": float(np.mean(list(ranks[c].values()))),
            "mean_auc": float(np.mean(list(means[c].values()))),
            "above_floor": all(v >= FLOOR for v in means[c].values()),
        }
        for c in candidates
    }
    eligible = [c for c in candidates if summary[c]["above_floor"]] or candidates
    best = min(eligible, key=lambda c: (summary[c]["mean_rank"], -summary[c]["mean_auc"]))
    return best, summary


def default_record(name: str) -> dict:
    """A candidate's name → the method and settings ``ppad train`` uses as the default."""
    method, region_set, *options = name.split()
    settings = {"region_set": region_set} if method != "zeroshot" else {}
    for option in options:
        key, value = option.split("=")
        settings[key] = [int(v) for v in value.split(",")] if key == "layers" else int(value)
    return {"method": method, "settings": settings}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="cxr-lite")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--shots", type=int, default=SHOTS, help="support normals per draw")
    parser.add_argument("--pool-films", type=int, default=200, help="pool val films of each class")
    parser.add_argument("--zhanglab-held-out", type=int, default=64)
    parser.add_argument("--nih-limit", type=int, default=None, help="at most this many NIH films of each class")
    parser.add_argument("--syntheses", default=",".join(SYNTHESES))
    parser.add_argument("--json", type=Path, default=None, help="write the table and the choice here")
    parser.add_argument("--record", action="store_true", help="write the choice into the backbone's JSON record")
    parser.add_argument("--record-from", type=Path, default=None, help="record the choice of an earlier --json, no run")
    args = parser.parse_args(argv)
    if args.record_from:
        result = json.loads(args.record_from.read_text())
        write_record(result["backbone"], result["default"])
        return result
    torch.manual_seed(0)
    reader = Reader(args.backbone)
    settings: dict[str, Callable[[], Iterator[Episode]]] = {
        "nih": lambda: nih_episodes(reader, args.data / "nih-cxr8", args.draws, args.shots, args.nih_limit),
        "pool": lambda: pool_episodes(reader, args.data / "cxr-pool", args.draws, args.shots, args.pool_films),
        "zhanglab": lambda: zhanglab_episodes(
            reader,
            args.data / "zhanglab",
            args.draws,
            args.shots,
            args.zhanglab_held_out,
            tuple(args.syntheses.split(",")),
        ),
    }
    table = {name: score_setting(episodes()) for name, episodes in settings.items()}
    best, summary = choose(table)
    print(f"{args.backbone}: {args.shots}-shot memories, {args.draws} draws; AUC mean over draws (floor {FLOOR})")
    print(f"{'candidate':<52} {'nih':>6} {'pool':>6} {'zhanglab':>8} {'rank':>6}")
    for name, row in sorted(summary.items(), key=lambda item: (item[1]["mean_rank"], -item[1]["mean_auc"])):
        mark = " " if row["above_floor"] else "✗"
        aucs = " ".join(f"{row['auc'][s]:>6.3f}" for s in ("nih", "pool"))
        print(f"{name:<52} {aucs} {row['auc']['zhanglab']:>8.3f} {row['mean_rank']:>6.1f} {mark}")
    chosen = {**default_record(best), "candidate": best, "chosen_by": "benchmarks/select_defaults.py", **summary[best]}
    print(f"default: {best}")
    result = {"backbone": args.backbone, "draws": args.draws, "floor": FLOOR, "table": summary, "default": chosen}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.record:
        write_record(args.backbone, chosen)
    return result


def write_record(backbone: str, chosen: dict) -> None:
    """The chosen default into the shipped backbone's JSON record, where ``ppad train`` reads it."""
    path = SHIPPED_DIR / f"{backbone}.json"
    record = json.loads(path.read_text())
    record["default_detector"] = chosen
    path.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
