"""A seeded generator of chest-radiograph-like images for the offline demo and tests.

Normal images: a bright body outline, two dark lung fields of varying size and position,
ribs, spine, heart and noise. Abnormal images add a textured consolidation-like opacity inside
one lung field — additive and Perlin-textured, deliberately *not* the gamma change that SAS
trains on, so the demo measures transfer from synthetic to different anomalies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ppad.synthesis.perlin import perlin_noise


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2


def chest_like(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One normal chest-like image in [0, 1] and its boolean lung-field mask."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = np.full((size, size), 0.05)
    image += 0.5 * (_ellipse(yy, xx, 0.08, 0, 0.95, 0.85 + rng.uniform(-0.05, 0.05)) < 1)
    lungs = np.zeros((size, size), dtype=bool)
    for side in (-1, 1):
        cy, cx = rng.uniform(-0.12, 0.02), side * rng.uniform(0.33, 0.42)
        lungs |= _ellipse(yy, xx, cy, cx, rng.uniform(0.48, 0.6), rng.uniform(0.22, 0.3)) < 1
    ribs = (np.sin((yy + 0.25 * xx**2) * rng.uniform(20, 26) + rng.uniform(0, np.pi)) > 0.55) * 0.08
    image = np.where(lungs, 0.2 + ribs, image)
    image += 0.18 * (np.abs(xx) < 0.07) * (yy > -0.8)  # spine
    image += 0.2 * (_ellipse(yy, xx, 0.35, 0.1, 0.28, 0.3) < 1)  # heart
    image = ndimage.gaussian_filter(image, sigma=size / 128)
    image += rng.normal(0, 0.015, image.shape)
    image = np.clip(image, 0, 1) ** rng.uniform(0.85, 1.15)
    return image.astype(np.float32), lungs


def add_opacity(image: np.ndarray, lungs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A textured opacity centred inside the lung fields; returns the image and its mask."""
    size = image.shape[0]
    rows, cols = np.nonzero(lungs)
    pick = rng.integers(rows.size)
    yy, xx = np.mgrid[0:size, 0:size]
    radius = rng.uniform(0.06, 0.14) * size
    blob = np.exp(-(((yy - rows[pick]) ** 2 + (xx - cols[pick]) ** 2) / (2 * radius**2)))
    texture = 0.6 + 0.4 * perlin_noise((size, size), (8, 8), rng)
    soft_lungs = ndimage.gaussian_filter(lungs.astype(np.float64), sigma=size / 100)
    opacity = rng.uniform(0.25, 0.45) * blob * texture * soft_lungs
    return np.clip(image + opacity, 0, 1).astype(np.float32), opacity > 0.05


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)


def write_demo_dataset(
    root: str | Path,
    n_train: int = 96,
    n_test_normal: int = 40,
    n_test_abnormal: int = 40,
    seed: int = 0,
    size: int = 256,
) -> Path:
    """Write a split-folder data set (``train/normal``, ``test/normal``, ``test/abnormal``) of PNGs."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = {("train", "normal"): n_train, ("test", "normal"): n_test_normal, ("test", "abnormal"): n_test_abnormal}
    for (split, label), count in counts.items():
        for i in range(count):
            image, lungs = chest_like(rng, size)
            if label == "abnormal":
                image, _ = add_opacity(image, lungs, rng)
            _save(image, root / split / label / f"{split}_{label}_{i:04d}.png")
    return root
