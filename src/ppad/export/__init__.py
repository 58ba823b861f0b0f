"""A trained run as an ONNX graph (prompts and text features folded in, the η rule inside) and the
numpy + onnxruntime scorer that runs it without PyTorch.

``ppad.export.runtime`` imports no torch; ``ppad.export.onnx`` (the exporter) does.
"""
