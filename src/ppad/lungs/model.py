"""The lung-field network and its safe loading.

A segmentation-models-pytorch U-Net on timm's EfficientNet-Lite0 encoder (one grey channel in,
one lung logit out), trained by ``ppad lungs-train`` and shipped as fp16 safetensors with its
spec in the file's metadata. Films are squashed to a square ``input_size`` and the logits are
resized back to the film's own size before post-processing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ppad.errors import FileProblem
from ppad.lungs.postprocess import LungFields, lung_fields

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_WEIGHTS = WEIGHTS_DIR / "lung-unet.safetensors"
SPEC_KEY = "lung_net_spec"


class LungWeightsError(FileProblem):
    """A lung-segmenter weights file that cannot be used."""


@dataclass(frozen=True)
class LungNetSpec:
    """Everything needed to rebuild the network and feed it a film."""

    encoder: str = "tu-efficientnet_lite0"  # smp's name for timm's efficientnet_lite0
    input_size: int = 128
    decoder_channels: tuple[int, ...] = (64, 32, 24, 16, 8)
    mean: float = 0.449  # ImageNet's channel means/stds averaged: the grey stem sums the RGB filters
    std: float = 0.226

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LungNetSpec:
        values = json.loads(text)
        values["decoder_channels"] = tuple(values["decoder_channels"])
        return cls(**values)


def build_lung_net(spec: LungNetSpec) -> nn.Module:
    """The untrained network (no weights downloaded: ``encoder_weights=None``)."""
    import segmentation_models_pytorch as smp

    return smp.Unet(
        spec.encoder, encoder_weights=None, in_channels=1, classes=1, decoder_channels=spec.decoder_channels
    )


def resize_films(images: list[np.ndarray], size: int) -> torch.Tensor:
    """Grey films in [0, 1] → [N, 1, size, size] (antialiased bilinear: each film squashed to a square)."""
    resized = [
        F.interpolate(
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None],
            size=(size, size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        for image in images
    ]
    return torch.cat(resized)


def normalise(films: torch.Tensor, spec: LungNetSpec) -> torch.Tensor:
    return (films - spec.mean) / spec.std


class FrameProbability(nn.Module):
    """Square films of one size, ``[B, S, S]`` in [0, 1] → ``[B, S, S]`` lung probability: the
    network at its input size, resized back. One graph, so PyTorch and ONNX segment alike."""

    def __init__(self, net: nn.Module, spec: LungNetSpec) -> None:
        super().__init__()
        self.net, self.spec = net, spec
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.spec.input_size
        films = F.interpolate(images[:, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return self.unsquash(self.logits(films), images.shape[-2:])

    def logits(self, films: torch.Tensor) -> torch.Tensor:
        """[B, 1, s, s] films squashed to the input size → [B, 1, s, s] lung logits."""
        return self.net(normalise(films, self.spec))

    @staticmethod
    def unsquash(logits: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """[B, 1, s, s] logits → [B, H, W] lung probability at a film's own ``size``."""
        return torch.sigmoid(F.interpolate(logits, size=size, mode="bilinear", align_corners=False))[:, 0]


class LungSegmenter:
    """A network with its spec: films in, lung probabilities or lung fields out (the shipped one
    runs a copy with its batch norms folded, channels-last: the same function, faster on CPU)."""

    def __init__(self, net: nn.Module, spec: LungNetSpec, source: Path | None = None) -> None:
        self.net = net.eval()
        self.spec = spec
        self.source = source

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the weights file (what a run's manifest records)."""
        from ppad.backbones.towers import sha256_of

        return sha256_of(self.source) if self.source else "untrained"

    @torch.inference_mode()
    def probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Lung probability per pixel, at each film's own size."""
        films = resize_films(images, self.spec.input_size).contiguous(memory_format=torch.channels_last)
        logits = self.frame_probability.logits(films)
        return [
            self.frame_probability.unsquash(logit[None], image.shape)[0].numpy().astype(np.float32)
            for logit, image in zip(logits, images)
        ]

    def segment(self, images: list[np.ndarray]) -> list[LungFields]:
        """Post-processed lung fields, flagged (and falling back to the halves) when untrustworthy."""
        return [lung_fields(probability) for probability in self.probabilities(images)]

    @cached_property
    def frame_probability(self) -> FrameProbability:
        return FrameProbability(self.net, self.spec)

    @torch.inference_mode()
    def segment_frames(self, images: np.ndarray) -> list[LungFields]:
        """Lung fields of square films of one size (a model's input frame), ``[N, S, S]`` in [0, 1]."""
        probabilities = self.frame_probability(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        return [lung_fields(probability) for probability in probabilities.numpy()]


def load_lung_segmenter(path: str | Path | None = None) -> LungSegmenter:
    """The shipped segmenter, or a ``ppad lungs-train`` output, ready for inference: safetensors only (no pickle)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else SHIPPED_WEIGHTS
    if not path.is_file():
        raise LungWeightsError(path, "no such file (regenerate the shipped weights with `ppad lungs-train`)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - any decoding failure is a named file problem
        raise LungWeightsError(path, f"is not a readable safetensors file ({error})") from error
    if SPEC_KEY not in metadata:
        raise LungWeightsError(path, f"has no {SPEC_KEY!r} metadata: not a ppad lung-segmenter file")
    spec = LungNetSpec.from_json(metadata[SPEC_KEY])
    net = build_lung_net(spec)
    try:
        net.load_state_dict({name: tensor.float() for name, tensor in state.items()}, strict=True)
    except RuntimeError as error:
        raise LungWeightsError(path, f"its tensors do not fit the network in its spec ({error})") from error
    from ppad.backbones.folded import folded_tower

    return LungSegmenter(folded_tower(net), spec, path)
