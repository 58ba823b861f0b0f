"""Read and resize many images with a progress bar, collecting failures instead of stopping."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ppad.data.readers import ImageReadError, read_image
from ppad.data.resize import ImageResize

READ_THREADS = 4


@dataclass
class LoadedImages:
    """Resized images [N, S, S] in [0, 1] for the readable ``paths``; ``failures`` for the rest."""

    images: np.ndarray
    paths: list[Path]
    failures: list[ImageReadError] = field(default_factory=list)


def load_images(
    paths: list[Path], preprocessing: ImageResize, desc: str = "reading", progress: bool = True
) -> LoadedImages:
    """Read, convert and resize ``paths`` in order; unreadable files are reported, not fatal."""

    def read_one(path: Path) -> np.ndarray | ImageReadError:
        try:
            return preprocessing.resize(read_image(path))
        except ImageReadError as error:
            return error

    size = preprocessing.image_size
    images, kept, failures = [], [], []
    with ThreadPoolExecutor(READ_THREADS) as pool:
        results = pool.map(read_one, paths)
        for path, result in tqdm(zip(paths, results), total=len(paths), desc=desc, disable=not progress, leave=False):
            if isinstance(result, ImageReadError):
                failures.append(result)
            else:
                images.append(result)
                kept.append(Path(path))
    stacked = np.stack(images) if images else np.zeros((0, size, size), dtype=np.float32)
    return LoadedImages(images=stacked.astype(np.float32), paths=kept, failures=failures)
