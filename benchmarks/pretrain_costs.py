"""Per-film cost of each pre-training stage on real films, and the training step at 32 vs bf16-mixed.

Run: python benchmarks/pretrain_costs.py [--films 128] [--batch-size 128] [--steps 5]

Stages (what ``ppad pretrain`` runs): reading and resizing a film; the frozen front of the image
tower on one augmented view; the text tower on one text (sentence samples of real cxr-notes
reports); one training step (the tail and the heads, forward and backward, AdamW) per draw, at
each ``--precision``. The last lines project MIMIC-CXR (368,960 training films in 222,758 studies
with reports — MIMIC-CXR-JPG v2.0.0's train split) from these costs: the one-time cache and an
epoch, on this machine's processes. Printed ratio: bf16-mixed step time / float32 step time.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from ppad.backbones import DualTowerBackbone, DualTowerSpec
from ppad.data import load_images
from ppad.pretraining.data import PretrainSettings, _front, _sentence_embeddings, augmentation, text_pairs_of
from ppad.pretraining.films import read_table
from ppad.pretraining.loop import Trained, _autocast, _optimizer
from ppad.pretraining.losses import cxr_clip_loss

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MIMIC_FILMS, MIMIC_STUDIES = 368_960, 222_758


def _timed(work, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--films", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    backbone = DualTowerBackbone(DualTowerSpec(trained_stages=1)).to(args.device)
    rows = list(csv.DictReader(open(DATA / "nih-cxr8" / "labels.csv")))[: args.films]
    paths = [DATA / "nih-cxr8" / row["image"] for row in rows]
    read = _timed(lambda: load_images(paths, backbone.architecture.preprocessing, progress=False)) / len(paths)
    images = torch.from_numpy(load_images(paths, backbone.architecture.preprocessing, progress=False).images)
    augment = augmentation()
    views = torch.stack([augment(image[None])[0] for image in images])
    front = _timed(lambda: _front(backbone, views)) / len(views)
    pooled, maps = _front(backbone, views)
    notes = read_table(DATA / "cxr-notes")
    keys = list(dict.fromkeys(("report", film.sections) for film in notes.films))[: args.films // 4]
    rng = np.random.default_rng(0)
    texts = [t for key in keys for pair in text_pairs_of(key, 2, rng, backbone.tokenizer) for t in pair]
    text = _timed(lambda: _sentence_embeddings(backbone, texts)) / len(texts)
    embedded = _sentence_embeddings(backbone, texts)
    batch = {
        "pooled0": pooled[: args.batch_size],
        "maps0": maps[: args.batch_size],
        "pooled1": pooled.flip(0)[: args.batch_size],
        "maps1": maps.flip(0)[: args.batch_size],
        "texts": embedded[: 2 * min(args.batch_size, len(embedded) // 2)].reshape(-1, 2, embedded.shape[-1]),
    }
    draws = min(len(batch["pooled0"]), len(batch["texts"]))
    batch = {key: value[:draws] for key, value in batch.items()}
    groups = torch.arange(draws, device=args.device)
    step_seconds = {}
    for precision in ("32", "bf16-mixed"):
        settings = PretrainSettings(precision=precision)
        model, optimizer = Trained(backbone), _optimizer(backbone, settings)

        def step(model=model, optimizer=optimizer, settings=settings) -> None:
            with _autocast(settings, backbone.device):
                images, words, scale = model(batch)
            loss = cxr_clip_loss([x.float() for x in images], [x.float() for x in words], groups, scale.float())
            optimizer.zero_grad()
            loss["loss"].backward()
            optimizer.step()
            if backbone.device.type == "cuda":
                torch.cuda.synchronize()

        step()  # warm-up
        step_seconds[precision] = _timed(step, args.steps) / draws
    print(f"{args.device}, {torch.get_num_threads()} threads, {len(paths)} NIH films, {len(texts)} cxr-notes texts:")
    print(f"read + resize      {read * 1000:7.2f} ms / film")
    print(f"frozen front       {front * 1000:7.2f} ms / view")
    print(f"text tower         {text * 1000:7.2f} ms / text")
    for precision, seconds in step_seconds.items():
        print(f"train step {precision:>10} {seconds * 1000:7.2f} ms / draw (batch {draws})")
    print(f"bf16-mixed / 32 step time: {step_seconds['bf16-mixed'] / step_seconds['32']:.2f}x")
    recipe = PretrainSettings()
    cache = MIMIC_FILMS * (read + recipe.views * front) + MIMIC_STUDIES * recipe.text_pairs * 2 * text
    epoch = MIMIC_STUDIES * step_seconds["32"]
    print(
        f"MIMIC-CXR projection, one process of this kind: cache {cache / 3600:.1f} h once "
        f"({recipe.views} views, {recipe.text_pairs} text pairs), epoch {epoch / 3600:.2f} h; "
        f"N processes divide both by up to N"
    )


if __name__ == "__main__":
    main()
