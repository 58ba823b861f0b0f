"""Reading radiographs, data-set layouts, few-shot splits and the demo data generator."""

from ppad.data.fewshot import FewShotSplit, draw_few_shot
from ppad.data.layouts import (
    ABNORMAL,
    NORMAL,
    DatasetIndex,
    LabelledImage,
    LayoutError,
    discover,
    list_images,
    write_manifest,
)
from ppad.data.loading import LoadedImages, load_images
from ppad.data.readers import SUPPORTED_SUFFIXES, ImageReadError, read_image
from ppad.data.synthetic import write_demo_dataset

__all__ = [
    "ABNORMAL",
    "NORMAL",
    "SUPPORTED_SUFFIXES",
    "DatasetIndex",
    "FewShotSplit",
    "ImageReadError",
    "LabelledImage",
    "LayoutError",
    "LoadedImages",
    "discover",
    "draw_few_shot",
    "list_images",
    "load_images",
    "read_image",
    "write_demo_dataset",
    "write_manifest",
]
