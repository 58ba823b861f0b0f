"""Size and placement of synthetic anomalies: `sas` vs `sas-reference` on 224², 2000 draws each,
the region drawn at random from the five views as in training.

Run: python benchmarks/sas_area.py
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ppad.regions import get_region_set
from ppad.synthesis import get_synthesis

DRAWS = 2000


def main() -> None:
    image = np.full((224, 224), 0.5, np.float32)
    masks = get_region_set("ppad").pixel_masks(224)
    for name in ("sas", "sas-reference"):
        task, rng = get_synthesis(name), np.random.default_rng(0)
        area, inside, pieces, edge = [], [], [], 0
        for _ in range(DRAWS):
            region = masks[rng.integers(len(masks))]
            mask = task(image, region, rng).mask
            area.append(mask.sum())
            inside.append((mask & region).sum() / mask.sum())
            pieces.append(ndimage.label(mask)[1])
            edge += mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        area, inside, pieces = np.array(area), np.array(inside), np.array(pieces)
        low, high = np.percentile(area, [25, 75])
        print(
            f"{name:14s} median area {np.median(area):.0f} px (IQR {low:.0f}-{high:.0f}), "
            f"{np.median(area) / 224**2:.1%} of the image; in >1 piece {np.mean(pieces > 1):.1%} "
            f"(max {pieces.max()}); mean share inside the region {inside.mean():.2f}; "
            f"touches the border {edge / DRAWS:.1%}"
        )


if __name__ == "__main__":
    main()
