"""A frozen OpenAI-layout CLIP (CheXzero, tiny) exposing the entry points prompt learning needs.

The text tower is entered at the token-embedding level (so learned context vectors can be
spliced in) and the image tower right after the patch projection, its *input embedding* (so
learned patch vectors can replace patch embeddings before the class token and positional
embedding are added). :mod:`ppad.backbones.protocol` lists the surface every backbone offers.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ppad.backbones.architectures import Architecture
from ppad.errors import SettingsError
from ppad.regions.regions import PATCH_RULES

if TYPE_CHECKING:
    import open_clip


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 over the module's parameters and buffers (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class ClipBackbone(nn.Module):
    """A frozen open_clip ``CLIP`` plus where it came from and what its weights hash to."""

    transformer_towers = True  # MaPLe's deep prompts can enter both towers

    def __init__(self, clip: open_clip.CLIP, architecture: Architecture, source: str) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        super().__init__()
        self.clip = clip.eval().requires_grad_(False)
        self.architecture = architecture
        self.source = source
        self.fingerprint = weights_fingerprint(clip)
        self.tokenizer = SimpleTokenizer(context_length=self.context_length)

    def train(self, mode: bool = True) -> ClipBackbone:
        """The backbone is frozen: it stays in eval mode whatever its parent does."""
        return super().train(False)

    @property
    def patch_size(self) -> int:
        return self.clip.visual.patch_size[0]

    @property
    def width(self) -> int:
        return self.clip.visual.conv1.out_channels

    @property
    def text_width(self) -> int:
        return self.clip.token_embedding.embedding_dim

    @property
    def embed_dim(self) -> int:
        return self.clip.text_projection.shape[1]

    @property
    def depth(self) -> int:
        return len(self.clip.visual.transformer.resblocks)

    @property
    def dense_layers(self) -> tuple[int, ...]:
        """Blocks at half, three quarters and all of the depth: 6, 9, 12 of a ViT-B's 12, the same
        relative depths as MediCLIP's 12, 18, 24 of ViT-L/14's 24."""
        return tuple(sorted({self.depth // 2, 3 * self.depth // 4, self.depth}))

    @property
    def context_length(self) -> int:
        return self.clip.context_length

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def grid_size(self, image_size: int) -> int:
        if image_size % self.patch_size:
            raise SettingsError(f"image size {image_size} is not a multiple of the patch size {self.patch_size}")
        return image_size // self.patch_size

    # --- image tower -----------------------------------------------------------------------
    def input_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised images → [B, N, width] patch embeddings (row-major)."""
        return self.clip.visual.conv1(images).flatten(2).transpose(1, 2)

    def prompt_shape(self, image_size: int) -> tuple[int, ...]:
        """An image prompt holds one vector per patch: [N, width]."""
        return (self.grid_size(image_size) ** 2, self.width)

    def keep_of_masks(self, masks: torch.Tensor, patch_rule: str) -> torch.Tensor:
        """[…, S, S] pixel masks → […, N, 1] patch masks (1 = patch inside the region by the patch
        rule, over the row-major patch grid), broadcastable over patch embeddings."""
        coverage = F.avg_pool2d(masks.float().flatten(0, -3)[:, None], self.patch_size, self.patch_size)
        keep = PATCH_RULES[patch_rule](coverage).float().flatten(1)
        return keep.reshape(*masks.shape[:-2], -1, 1).to(self.device)

    def visual_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """Prepend the class token and add the (resampled) positional embedding → [B, 1+N, W]."""
        visual = self.clip.visual
        grid = math.isqrt(patches.shape[1])
        cls = visual.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self._positional_embedding(grid).to(patches.dtype)

    def visual_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Transformer output tokens → [B, D] projected image features."""
        pooled, _ = self.clip.visual._pool(tokens)
        return pooled @ self.clip.visual.proj

    def encode_input_embeddings(self, patches: torch.Tensor) -> torch.Tensor:
        """Class token + positional embedding + transformer + projection → [B, D] features."""
        visual = self.clip.visual
        return self.visual_head(visual.transformer(visual.ln_pre(self.visual_tokens(patches))))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_input_embeddings(self.input_embeddings(images))

    def memory_features(self, images: torch.Tensor, pool: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen descriptor for the few-shot memory: the unit-norm image embedding (a global
        token: ``pool`` does not apply)."""
        return F.normalize(self.encode_image(images), dim=-1)

    def encode_image_and_memory(
        self, images: torch.Tensor, pool: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encode_image(images), memory_features(images))`` from one pass through the tower."""
        features = self.encode_image(images)
        return features, F.normalize(features, dim=-1)

    def dense_widths(self, layers: tuple[int, ...]) -> list[int]:
        return [self.width] * len(layers)

    def dense_features(self, images: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """[B, width, g, g] patch tokens (class token dropped) at the output of each block in
        ``layers`` (1-based), from the residual stream before ``ln_post`` and the projection."""
        if not layers or min(layers) < 1 or max(layers) > self.depth:
            raise SettingsError(f"dense layers must lie in 1..{self.depth}, got {layers}")
        transformer = self.clip.visual.transformer
        x = self.clip.visual.ln_pre(self.visual_tokens(self.input_embeddings(images)))
        grid = math.isqrt(x.shape[1] - 1)
        x = x if transformer.batch_first else x.transpose(0, 1)
        taken: dict[int, torch.Tensor] = {}
        for block_number, block in enumerate(transformer.resblocks[: max(layers)], start=1):
            x = block(x)
            if block_number in layers:
                tokens = x if transformer.batch_first else x.transpose(0, 1)
                taken[block_number] = tokens[:, 1:].transpose(1, 2).unflatten(2, (grid, grid))
        return [taken[layer] for layer in layers]

    def _positional_embedding(self, grid: int) -> torch.Tensor:
        """The positional embedding for a ``grid`` × ``grid`` patch layout (bicubic-resampled)."""
        table = self.clip.visual.positional_embedding
        native = math.isqrt(table.shape[0] - 1)
        if grid == native:
            return table
        patch_table = table[1:].reshape(1, native, native, -1).permute(0, 3, 1, 2)
        patch_table = F.interpolate(patch_table, size=(grid, grid), mode="bicubic", align_corners=False)
        return torch.cat([table[:1], patch_table.permute(0, 2, 3, 1).reshape(grid * grid, -1)])

    # --- text tower ------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def token_embeddings(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.clip.token_embedding(token_ids)

    def text_head(self, tokens: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """Transformer output tokens → [P, D] text features taken at each EOT position."""
        tokens = self.clip.ln_final(tokens)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), eot_index] @ self.clip.text_projection

    def encode_token_embeddings(
        self, embeddings: torch.Tensor, eot_index: torch.Tensor, causal: bool = True
    ) -> torch.Tensor:
        """[P, L, width] token embeddings → [P, D] text features (``causal=False``: without the
        text transformer's causal mask, as MediCLIP's code runs it)."""
        clip, length = self.clip, embeddings.shape[1]  # prompts may stop at their longest end token
        x = embeddings + clip.positional_embedding[:length].to(embeddings.dtype)
        mask = clip.attn_mask[:length, :length] if causal else None
        return self.text_head(clip.transformer(x, attn_mask=mask), eot_index)

    def eot_index(self, token_ids: torch.Tensor) -> torch.Tensor:
        return (token_ids == self.tokenizer.eot_token_id).int().argmax(dim=-1)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.encode_token_embeddings(self.token_embeddings(token_ids), self.eot_index(token_ids))
