"""Reading radiographs, data-set layouts, few-shot splits and the demo data generator.

Names are imported on first use, so reading films (``readers``, ``resize``, ``loading``) does
not load the demo generator's SciPy and synthesis modules — ``ppad score --onnx`` stands on them.
"""

from ppad.lazy import lazy_exports

_EXPORTS = {
    "FewShotSplit": "fewshot",
    "draw_few_shot": "fewshot",
    "ABNORMAL": "layouts",
    "NORMAL": "layouts",
    "DatasetIndex": "layouts",
    "LabelledImage": "layouts",
    "LayoutError": "layouts",
    "discover": "layouts",
    "list_images": "layouts",
    "write_manifest": "layouts",
    "LoadedImages": "loading",
    "load_images": "loading",
    "SUPPORTED_SUFFIXES": "readers",
    "ImageReadError": "readers",
    "read_image": "readers",
    "write_demo_dataset": "synthetic",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
