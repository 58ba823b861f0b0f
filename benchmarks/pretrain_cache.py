"""Pre-training cost: cached frozen-tower outputs vs running the towers every step.

Run: python benchmarks/pretrain_cache.py [--films 64] [--batch-size 32]

Both sides compute the same CXR-CLIP loss on the same batch and take one AdamW step on what
``ppad pretrain`` trains (the heads and the image tower's last stage, cxr-lite 2's recipe); the
reference runs the whole image tower on two augmented views and the text tower on two texts per
film inside the step, the cached side reads the frozen part (the map the trained stage starts
from, and the pooled frozen stages) and runs only the trained stage.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ppad.backbones import DualTowerBackbone, DualTowerSpec
from ppad.pretraining.data import _front, _sentence_embeddings, augmentation, with_tail
from ppad.pretraining.losses import cxr_clip_loss
from ppad.pretraining.texts import text_pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--films", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    backbone = DualTowerBackbone(DualTowerSpec(trained_stages=1))
    films = torch.rand(args.films, 224, 224)
    groups = torch.from_numpy(rng.integers(0, 4, args.films))
    label_sets = [(), ("Pneumonia",), ("Effusion",), ("Effusion", "Pneumonia")]
    texts = [text_pool(labels, 2, rng) for labels in label_sets]
    augment = augmentation()
    optimizer = torch.optim.AdamW([*backbone.head_parameters(), *backbone.tail_parameters()], lr=1e-4)

    def step(images, sentences) -> float:
        loss = cxr_clip_loss(
            tuple(backbone.image_head(with_tail(backbone, *x)) for x in images),
            tuple(backbone.text_head(t) for t in sentences),
            groups[: len(images[0][0])],
            backbone.logit_scale,
        )["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def uncached_epoch() -> None:
        for first in range(0, args.films, args.batch_size):
            batch = films[first : first + args.batch_size]
            views = [_front(backbone, torch.stack([augment(f[None])[0] for f in batch])) for _ in range(2)]
            group = groups[first : first + args.batch_size]
            words = [_sentence_embeddings(backbone, [texts[int(g)][k] for g in group]) for k in range(2)]
            step(views, words)

    views = [_front(backbone, torch.stack([augment(f[None])[0] for f in films])) for _ in range(2)]
    words = [_sentence_embeddings(backbone, [texts[int(g)][k] for g in groups]) for k in range(2)]

    def cached_epoch() -> None:
        for first in range(0, args.films, args.batch_size):
            part = slice(first, first + args.batch_size)
            step([(v[0][part], v[1][part]) for v in views], [w[part] for w in words])

    timings = {}
    for name, epoch in (("cached", cached_epoch), ("towers every step", uncached_epoch)):
        start = time.perf_counter()
        epoch()
        timings[name] = time.perf_counter() - start
    print(f"{args.films} films, batch {args.batch_size}, {torch.get_num_threads()} threads, one epoch:")
    print(
        f"cached tower outputs: {timings['cached'] * 1000:.1f} ms; towers every step: "
        f"{timings['towers every step']:.2f} s: {timings['towers every step'] / timings['cached']:.0f}x"
    )


if __name__ == "__main__":
    main()
