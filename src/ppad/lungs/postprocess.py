"""From a lung probability map to the patient's right and left lung fields, or a flagged fallback.

The two largest connected components are kept and their holes filled. By the radiological
convention a frontal film shows the patient's right on the image's left, so the component whose
centre lies further left in the image is the patient's right lung. A mask that cannot be trusted
(no or one lung, an implausible area, grossly asymmetric or same-side fields, an unsure map)
keeps its reason and the film falls back to the image halves: never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

THRESHOLD = 0.5
#: lung field area as a fraction of the film, both lungs together (trusted range)
AREA_RANGE = (0.08, 0.6)
#: smaller lung / larger lung below this: grossly asymmetric
MIN_SIDE_RATIO = 0.3
#: pixels the network is unsure of (probability within UNSURE_BAND), per lung pixel, above this: unsure
MAX_UNSURE = 0.35
UNSURE_BAND = (0.2, 0.8)

RIGHT_LABEL = 1  # patient's right lung (image left) in a side-label image
LEFT_LABEL = 2  # patient's left lung (image right)


@dataclass(frozen=True)
class LungFields:
    """One film's lung fields as the segmenter found them, and the regions to use.

    ``lung_right`` / ``lung_left`` are the segmenter's cleaned patient's right and left lungs (empty
    when it found none). ``right`` / ``left`` are the regions to use: those lungs when trusted,
    otherwise the image halves (the patient's right = the image's left half); ``reason`` says why."""

    lung_right: np.ndarray
    lung_left: np.ndarray
    reason: str = ""

    @property
    def trusted(self) -> bool:
        return not self.reason

    @property
    def regions(self) -> str:
        """What ``right`` / ``left`` are: ``"lungs"`` or ``"halves"``."""
        return "lungs" if self.trusted else "halves"

    @property
    def mask(self) -> np.ndarray:
        """Both lungs as the segmenter found them (trusted or not)."""
        return self.lung_right | self.lung_left

    @property
    def right(self) -> np.ndarray:
        return self.lung_right if self.trusted else image_halves(self.lung_right.shape)[0]

    @property
    def left(self) -> np.ndarray:
        return self.lung_left if self.trusted else image_halves(self.lung_left.shape)[1]

    def side_fractions(self) -> tuple[float, float]:
        """The segmenter's right and left lung areas as fractions of the film."""
        return float(self.lung_right.mean()), float(self.lung_left.mean())

    def side_labels(self) -> np.ndarray:
        """uint8 image: :data:`RIGHT_LABEL` / :data:`LEFT_LABEL` on the regions used, 0 elsewhere."""
        labels = np.zeros(self.lung_right.shape, np.uint8)
        labels[self.right] = RIGHT_LABEL
        labels[self.left] = LEFT_LABEL
        return labels


def image_halves(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The fallback regions: (patient's right = image's left half, patient's left = image's right half)."""
    right = np.zeros(shape, bool)
    right[:, : shape[1] // 2] = True
    return right, ~right


def two_largest_components(binary: np.ndarray) -> list[np.ndarray]:
    """The (at most) two largest 8-connected components, holes filled, largest first."""
    labels, count = ndimage.label(binary, structure=np.ones((3, 3), bool))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    largest = np.argsort(sizes)[::-1][:2] + 1
    return [ndimage.binary_fill_holes(labels == label) for label in largest]


def lung_fields(probability: np.ndarray, threshold: float = THRESHOLD) -> LungFields:
    """Clean a probability map into lung fields; flag it (halves used) when it cannot be trusted."""
    components = two_largest_components(probability > threshold)
    right, left = np.zeros(probability.shape, bool), np.zeros(probability.shape, bool)
    columns = [_centre_column(component) for component in components]
    if len(components) == 2:  # the one centred further left in the image is the patient's right lung
        on_right = [columns[0] < columns[1], columns[1] < columns[0]]
    else:
        on_right = [column < probability.shape[1] / 2 for column in columns]
    for component, is_right in zip(components, on_right):
        (right if is_right else left)[component] = True
    return LungFields(right, left, distrust(probability, components))


def distrust(probability: np.ndarray, components: list[np.ndarray]) -> str:
    """Why these lung fields cannot be trusted ("" when they can)."""
    if not components:
        return "no lung field found"
    sizes = [int(component.sum()) for component in components]
    film = probability.size
    area = sum(sizes) / film
    if len(components) == 1 or sizes[1] / sizes[0] < MIN_SIDE_RATIO / 3:
        return f"one lung field found ({sizes[0] / film:.0%} of the film)"
    if not AREA_RANGE[0] <= area <= AREA_RANGE[1]:
        return f"implausible lung area: {area:.0%} of the film (expected {AREA_RANGE[0]:.0%}–{AREA_RANGE[1]:.0%})"
    if sizes[1] / sizes[0] < MIN_SIDE_RATIO:
        return f"lung fields grossly asymmetric (smaller/larger area {sizes[1] / sizes[0]:.2f})"
    middle = probability.shape[1] / 2
    if (_centre_column(components[0]) < middle) == (_centre_column(components[1]) < middle):
        return "both lung fields on one side of the film"
    unsure = np.count_nonzero((probability > UNSURE_BAND[0]) & (probability < UNSURE_BAND[1])) / sum(sizes)
    if unsure > MAX_UNSURE:
        return f"segmenter unsure: {unsure:.0%} as many uncertain pixels as lung pixels"
    return ""


def _centre_column(component: np.ndarray) -> float:
    return float(np.nonzero(component)[1].mean())
