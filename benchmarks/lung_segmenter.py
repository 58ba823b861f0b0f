"""The lung segmenter's time per film beside cxr-lite's own, in one run, on the same real films.

Run: nice -n 5 python benchmarks/lung_segmenter.py [--films 32] [--threads 2] [--sizes 128,160,192,256]

Films are taken one at a time (batch 1, as ``ppad lungs`` does), alternating the two models film
by film so a busy machine slows both alike. Times are medians over films, in ms:
* cxr-lite: resize to 224 + normalise + ``encode_image`` (the backbone's image pass);
* segmenter (batch norms folded, as shipped): network only (resize + U-Net + logits back to the
  film's size), and in full with the post-processing (components, holes, sides, trust checks) —
  what ``ppad lungs`` spends per film; and in full on the film resized into the model's 224-px
  input frame — what ``--region-set lungs`` and the lung-restricted maps spend per film.
``--sizes`` also times untrained networks of the same design at other input sizes (time does not
depend on the weights): what was weighed when choosing the shipped input size. With
``--data`` (a lung-masks folder), the shipped weights' val Dice is printed too. ``--record``
stores the medians (and this command) under "timings" in the shipped weights' JSON record.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ppad.backbones import load_backbone
from ppad.backbones.folded import folded_tower
from ppad.data import discover, read_image
from ppad.io import read_json, write_json
from ppad.lungs.model import LungSegmenter, build_lung_net, load_lung_segmenter
from ppad.lungs.postprocess import lung_fields

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--films", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="128,160,192,256", help="input sizes of untrained networks to time")
    parser.add_argument("--zhanglab", type=Path, default=SHARED / "zhanglab")
    parser.add_argument("--data", type=Path, default=SHARED / "lung-masks", help="lung-masks folder for val Dice")
    parser.add_argument("--record", action="store_true", help="write the timings into the shipped JSON record")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = [item.path for item in discover(args.zhanglab).test[: args.films]]
    films = [read_image(path) for path in paths]

    backbone = load_backbone("cxr-lite")
    preprocessing = backbone.architecture.preprocessing
    segmenter = load_lung_segmenter()

    def encode(film: np.ndarray) -> None:
        with torch.inference_mode():
            backbone.encode_image(preprocessing.normalize(torch.from_numpy(preprocessing.resize(film))[None]))

    cases: dict[str, Callable[[np.ndarray], object]] = {
        "cxr-lite encode_image (224)": encode,
        f"lung segmenter network ({segmenter.spec.input_size})": lambda film: segmenter.probabilities([film]),
        f"lung segmenter + post-processing ({segmenter.spec.input_size})": lambda film: segmenter.segment([film]),
        "lung segmenter in the model's 224 frame, in full": lambda film: segmenter.segment_frames(
            preprocessing.resize(film)[None]
        ),
    }
    for size in (int(text) for text in args.sizes.split(",") if text):
        spec = replace(segmenter.spec, input_size=size)
        untrained = LungSegmenter(folded_tower(build_lung_net(spec)), spec)
        cases[f"untrained network at {size}"] = lambda film, model=untrained: model.probabilities([film])
    for run in cases.values():  # warm-up
        run(films[0])
    times: dict[str, list[float]] = {name: [] for name in cases}
    for film in films:
        for name, run in cases.items():
            times[name].append(timed(lambda run=run, film=film: run(film)))
    medians = {name: round(statistics.median(values), 2) for name, values in times.items()}
    reference = medians["cxr-lite encode_image (224)"]
    print(f"{len(films)} ZhangLab films, batch 1, torch threads {args.threads}; median ms per film")
    print(f"{'case':<44} {'ms/film':>8} {'× cxr-lite':>10}")
    for name, median in medians.items():
        print(f"{name:<44} {median:8.1f} {median / reference:10.2f}")
    if args.record:
        record_path = segmenter.source.with_suffix(".json")
        record = read_json(record_path)
        record["timings"] = {"command": sys.argv, "films": len(films), "threads": args.threads, "ms_per_film": medians}
        write_json(record_path, record)
    if (args.data / "labels.csv").is_file():
        from ppad.lungs.training import read_split, val_dice

        val = read_split(args.data, "val")
        scores = val_dice(segmenter, val)
        trusted = sum(lung_fields(p).trusted for p in segmenter.probabilities(val.images))
        print(
            f"val Dice {scores.mean():.4f} (median {np.median(scores):.4f}, min {scores.min():.4f}), "
            f"{trusted}/{len(scores)} val films trusted"
        )


if __name__ == "__main__":
    main()
