"""Maps restricted to the lung fields on the NIH boxes: what the restriction costs per film, and how
sure the pointing game's lead over the priors is (a paired bootstrap over the films).

Run: python benchmarks/lung_maps.py --run RUN [--boxes ../shared/data/nih-cxr8/boxes.csv] [--map-method auto]

Cost: the segmenter on the films in the model's input frame (a fresh memo each repeat, weights
loaded once, best of 3) and the restriction itself, next to the map. Comparison: per film, the
restricted map's pointing hit and pixel AUC against the lung prior's and the centre prior's
(as ``ppad evaluate --boxes``), then 10,000 paired resamples of the films (seed 0); and on how
many films the whole-film map's maximum already lay inside the lungs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from ppad.lungs import load_lung_segmenter
from ppad.lungs.frames import FrameLungFields
from ppad.maps import anomaly_maps, resolve_map_method
from ppad.maps.files import film_maps
from ppad.maps.lungs import lungs_on_film, restrict_to_lungs, segment_lungs
from ppad.metrics.localization import box_mask, centre_prior, lung_prior, pixel_auc, pointing_hit, read_boxes
from ppad.runs import load_run

RESAMPLES = 10_000


def best_ms(work: Callable[[], object], n: int, repeats: int = 3) -> float:
    """Milliseconds per film of ``work`` over ``n`` films, best of ``repeats``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * min(times) / n


def per_film(model, boxes: dict, method: str) -> np.ndarray:
    """[films, 6]: pointing hit of the restricted map, lung prior, centre prior; then their pixel AUCs."""
    rows = []
    for chunk in film_maps(model, list(boxes), (method,), progress=False):
        for path, film, amap, fields in zip(chunk.paths, chunk.films, chunk.maps[method], chunk.lungs):
            mask = box_mask(boxes[path], film.shape)
            lungs = lungs_on_film(fields, film.shape, model.preprocessing)
            maps = (amap, lung_prior(lungs, film.shape), centre_prior(film.shape))
            rows.append([pointing_hit(m, mask) for m in maps] + [pixel_auc(m, mask) for m in maps])
    return np.array(rows)


def maxima_in_lungs(model, boxes: dict, method: str) -> tuple[int, int]:
    """On how many films the whole-film map's maximum lies inside the trusted lung fields, of how many."""
    inside = []
    for chunk in film_maps(model, list(boxes), (method,), progress=False, lungs=False):
        for film, amap, fields in zip(chunk.films, chunk.maps[method], segment_lungs(chunk.images)):
            lungs = lungs_on_film(fields, film.shape, model.preprocessing)
            inside.append(lungs is not None and bool(lungs.flat[int(np.argmax(amap))]))
    return sum(inside), len(inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="a trained run folder")
    parser.add_argument("--boxes", default="../shared/data/nih-cxr8/boxes.csv")
    parser.add_argument("--map-method", default="auto")
    args = parser.parse_args()
    model = load_run(args.run)
    method = resolve_map_method(model, args.map_method)
    boxes = read_boxes(args.boxes)
    scores = per_film(model, boxes, method)

    images = next(film_maps(model, list(boxes)[:32], (method,), progress=False, lungs=False)).images
    segmenter = load_lung_segmenter()
    fields = FrameLungFields(segmenter)(images)  # also the warm-up
    maps = anomaly_maps(model, images, method, lungs=False)
    n = len(images)
    print(f"{args.run}: {method} map, {n} films of {images.shape[-1]} px, {torch.get_num_threads()} threads")
    print(f"segmenting   {best_ms(lambda: FrameLungFields(segmenter)(images), n):6.1f} ms/film")
    print(f"restricting  {best_ms(lambda: restrict_to_lungs(maps, fields), n):6.1f} ms/film")
    print(f"{method + ' map':<12} {best_ms(lambda: anomaly_maps(model, images, method, lungs=False), n):6.1f} ms/film")

    inside, films = maxima_in_lungs(model, boxes, method)
    print(f"\nwhole-film {method} maximum inside the trusted lung fields on {inside} of {films} films")
    print(f"{len(scores)} films; means: pointing game, then pixel AUC")
    names = (f"{method} (lungs)", "lung prior", "centre prior")
    for column, name in enumerate(names):
        print(f"{name:<16} {scores[:, column].mean():.3f}  {scores[:, column + 3].mean():.3f}")
    draws = np.random.default_rng(0).integers(0, len(scores), (RESAMPLES, len(scores)))
    for metric, offset in (("pointing game", 0), ("pixel AUC", 3)):
        for column in (1, 2):
            difference = scores[:, offset] - scores[:, offset + column]
            low, high = np.percentile(difference[draws].mean(axis=1), [2.5, 97.5])
            print(
                f"{metric}: map − {names[column]} {difference.mean():+.3f} (95% paired bootstrap {low:+.3f} to {high:+.3f})"
            )


if __name__ == "__main__":
    main()
