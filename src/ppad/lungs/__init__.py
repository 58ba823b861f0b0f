"""Lung fields: a shipped segmenter (U-Net on EfficientNet-Lite0) and its post-processing.

``model`` holds the network and its safe loading, ``postprocess`` turns a probability map into the
patient's right and left lung fields (or a flagged fallback to the image halves), ``training``
regenerates the shipped weights. Names are imported on first use: post-processing needs no PyTorch.
"""

from ppad.lazy import lazy_exports

_EXPORTS = {
    "LungSegmenter": "model",
    "LungNetSpec": "model",
    "load_lung_segmenter": "model",
    "SHIPPED_WEIGHTS": "model",
    "LungFields": "postprocess",
    "lung_fields": "postprocess",
    "image_halves": "postprocess",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
