"""The surface every backbone offers to methods, prompts, scoring and training.

Two families implement it: :class:`~ppad.backbones.backbone.ClipBackbone` (OpenAI-layout ViT
CLIPs: CheXzero, ``tiny``) and :class:`~ppad.backbones.dual_tower.DualTowerBackbone` (a timm
image tower + a BERT-style text tower: ``cxr-lite``). Methods never branch on the family.
"""

from __future__ import annotations

from typing import Protocol

import torch


class PromptTokenizer(Protocol):
    sot_token_id: int
    eot_token_id: int

    def encode(self, text: str) -> list[int]: ...

    def __call__(self, texts: list[str]) -> torch.Tensor: ...


class Backbone(Protocol):
    """A frozen vision-language model entered where prompts act.

    * Image side: ``input_embeddings`` (ViT: patch embeddings; CNN: the normalised pixels) is
      where an image prompt replaces what lies outside a region, ``E ⊙ M + P ⊙ (1 − M)``, with
      ``M`` from ``keep_of_masks`` (pixel masks → the input's layout); ``encode_input_embeddings``
      finishes the tower.
      ``memory_features`` is the few-shot memory's frozen descriptor (``pool``: [B, 1, S, S]
      weights where a tower with local features pools them, e.g. the lung fields);
      ``encode_image_and_memory`` gives it with the unprompted image's features from one pass.
      ``dense_features`` gives local features ([B, C, h, w] per layer: a ViT's patch tokens at
      given blocks, a CNN's stage maps) for methods that read every patch (MediCLIP, maps).
    * Text side: ``token_embeddings`` of prompt ids (with placeholder slots for learned context)
      go through ``encode_token_embeddings``, pooled at/up to ``eot_index``.
    """

    source: str
    fingerprint: str
    tokenizer: PromptTokenizer
    transformer_towers: bool

    @property
    def device(self) -> torch.device: ...

    @property
    def logit_scale(self) -> torch.Tensor: ...

    @property
    def context_length(self) -> int: ...

    @property
    def text_width(self) -> int: ...

    @property
    def embed_dim(self) -> int: ...

    @property
    def dense_layers(self) -> tuple[int, ...]: ...

    def dense_widths(self, layers: tuple[int, ...]) -> list[int]: ...

    def dense_features(self, images: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]: ...

    def input_embeddings(self, images: torch.Tensor) -> torch.Tensor: ...

    def prompt_shape(self, image_size: int) -> tuple[int, ...]: ...

    def keep_of_masks(self, masks: torch.Tensor, patch_rule: str) -> torch.Tensor: ...

    def encode_input_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor: ...

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def memory_features(self, images: torch.Tensor, pool: torch.Tensor | None = None) -> torch.Tensor: ...

    def encode_image_and_memory(
        self, images: torch.Tensor, pool: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def tokenize(self, texts: list[str]) -> torch.Tensor: ...

    def token_embeddings(self, token_ids: torch.Tensor) -> torch.Tensor: ...

    def encode_token_embeddings(
        self, embeddings: torch.Tensor, eot_index: torch.Tensor, causal: bool = True
    ) -> torch.Tensor: ...

    def eot_index(self, token_ids: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor: ...
