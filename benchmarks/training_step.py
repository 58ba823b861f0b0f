"""PPAD training-step time against a straightforward implementation, side by side.

Run: python benchmarks/training_step.py [--backbone tiny|PATH] [--steps 20] [--batch-size 16]

ppad's step encodes the 10 (position, class) prompts once per step and sends whole-image rows
through the vision tower without the image-prompt path (nothing there can learn, so no backward
runs through it). The straightforward step encodes each sample's two prompts separately and
sends every row through the prompted path. Both compute the same loss; the script checks that.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from ppad.backbones import load_backbone
from ppad.data.batches import synthesize_batch
from ppad.methods import PPADModel
from ppad.synthesis import get_synthesis


def straightforward_logits(model: PPADModel, images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    backbone, prompt = model.backbone, model.text_prompt
    patches = backbone.input_embeddings(images)
    image = F.normalize(
        backbone.encode_input_embeddings(model.image_prompt(patches, model.region_keep[region])), dim=-1
    )
    embeddings = prompt()
    rows = []
    for i, r in enumerate(region.tolist()):
        pair = slice(2 * r, 2 * r + 2)  # this sample's (normal, abnormal) prompts, encoded for it alone
        text = F.normalize(backbone.encode_token_embeddings(embeddings[pair], prompt.eot_index[pair]), dim=-1)
        rows.append(backbone.logit_scale * text @ image[i])
    logits = torch.stack(rows)
    return logits[:, 1] - logits[:, 0]


def time_steps(step, batches, warmup: int = 2) -> float:
    for batch in batches[:warmup]:
        step(*batch)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        step(*batch)
    return (time.perf_counter() - start) / (len(batches) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = PPADModel(load_backbone(args.backbone))
    rng = np.random.default_rng(0)
    images = rng.random((args.batch_size * 2, 224, 224)).astype(np.float32) * 0.6 + 0.2
    masks = model.regions.pixel_masks(224)
    batches = []
    for _ in range(args.steps + 2):
        batch = synthesize_batch(images[rng.choice(len(images), args.batch_size)], masks, get_synthesis("sas"), rng)
        batches.append(
            (
                batch.model_input(model.preprocessing, model.device),
                torch.from_numpy(batch.region_index),
                torch.from_numpy(batch.labels),
            )
        )
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    def make_step(logits_fn):
        def step(x, region, labels):
            loss = F.binary_cross_entropy_with_logits(logits_fn(x, region), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return step

    x, region, _ = batches[0]
    with torch.no_grad():
        difference = (model(x, region) - straightforward_logits(model, x, region)).abs().max().item()
    ours = time_steps(make_step(model), batches)
    plain = time_steps(make_step(lambda x, r: straightforward_logits(model, x, r)), batches)
    print(
        f"backbone {model.backbone.architecture.name}, batch {args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads"
    )
    print(
        f"ppad step {ours * 1000:.1f} ms, straightforward step {plain * 1000:.1f} ms: {plain / ours:.2f}x faster (logit difference {difference:.1e})"
    )


if __name__ == "__main__":
    main()
