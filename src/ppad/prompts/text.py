"""Position-guided text prompt: ``[SOS] [position] [ctx × n_ctx] [class] . [EOS]``.

Prompts are tokenised once, at construction; the frozen token embeddings of every
(position, class) prompt are cached, and each forward only splices the learnable context
vectors into their slots.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ppad.backbones.protocol import Backbone
from ppad.errors import SettingsError

CTX_INIT_STD = 0.02


def prompt_token_ids(
    backbone: Backbone, positions: Sequence[str], classes: Sequence[str], n_ctx: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids for every (position, class) prompt with ``n_ctx`` placeholder slots.

    Returns ``(ids [P*C, L], ctx_start [P*C], eot_index [P*C])``; rows are position-major.
    """
    tokenizer = backbone.tokenizer
    length = backbone.context_length
    period = tokenizer.encode(".")
    rows, starts, eots = [], [], []
    for position in positions:
        head = [tokenizer.sot_token_id, *tokenizer.encode(position)]
        for name in classes:
            tail = [*tokenizer.encode(name), *period, tokenizer.eot_token_id]
            ids = head + [0] * n_ctx + tail
            if len(ids) > length:
                raise SettingsError(
                    f"prompt for position {position!r}, class {name!r} needs {len(ids)} tokens; the backbone takes {length}"
                )
            rows.append(ids + [0] * (length - len(ids)))
            starts.append(len(head))
            eots.append(len(ids) - 1)
    return torch.tensor(rows), torch.tensor(starts), torch.tensor(eots)


class PositionTextPrompt(nn.Module):
    """Learnable context vectors shared by all positions (and classes, unless class-specific).

    ``context_groups``: which context each class word uses (overrides ``class_specific``; e.g.
    several words of one class sharing that class's context). ``causal=False`` runs a causal
    text transformer without its mask (MediCLIP's code). ``trim``: encode only up to the longest
    prompt's end token — the same features wherever nothing attends past it (a causal mask, or a
    padding mask), at a fraction of the cost."""

    def __init__(
        self,
        backbone: Backbone,
        positions: Sequence[str],
        classes: Sequence[str],
        n_ctx: int = 16,
        class_specific: bool = False,
        context_groups: Sequence[int] | None = None,
        causal: bool = True,
        trim: bool = False,
    ) -> None:
        super().__init__()
        self.positions, self.classes, self.n_ctx, self.causal = list(positions), list(classes), n_ctx, causal
        ids, starts, eot_index = prompt_token_ids(backbone, positions, classes, n_ctx)
        self.length = int(eot_index.max()) + 1 if trim else None
        with torch.no_grad():
            frozen = backbone.token_embeddings(ids.to(backbone.device))
        slot = torch.arange(ids.shape[1])[None, :] - starts[:, None]
        self.register_buffer("frozen_embeddings", frozen, persistent=False)
        self.register_buffer("ctx_slot", ((slot >= 0) & (slot < n_ctx)).to(frozen.device), persistent=False)
        self.register_buffer("ctx_index", slot.clamp(0, n_ctx - 1).to(frozen.device), persistent=False)
        self.register_buffer("eot_index", eot_index.to(frozen.device), persistent=False)
        if context_groups is None:
            context_groups = range(len(classes)) if class_specific else [0] * len(classes)
        group_of_class = torch.as_tensor(list(context_groups), dtype=torch.long)
        class_of_row = group_of_class.repeat(len(positions))
        self.register_buffer("class_of_row", class_of_row.to(frozen.device), persistent=False)
        groups = int(group_of_class.max()) + 1
        self.ctx = nn.Parameter(torch.randn(groups, n_ctx, frozen.shape[-1], device=frozen.device) * CTX_INIT_STD)

    def forward(self) -> torch.Tensor:
        """[P*C, L, width] token embeddings with the context vectors in place."""
        ctx = self.ctx[self.class_of_row[:, None], self.ctx_index]  # [P*C, L, width]
        return torch.where(self.ctx_slot[..., None], ctx.to(self.frozen_embeddings.dtype), self.frozen_embeddings)

    def text_features(self, backbone: Backbone) -> torch.Tensor:
        """[P, C, D] unit-norm text features for every position and class."""
        features = backbone.encode_token_embeddings(self()[:, : self.length], self.eot_index, self.causal)
        features = features / features.norm(dim=-1, keepdim=True)
        return features.reshape(len(self.positions), len(self.classes), -1)


class ClassWordsTextPrompt(PositionTextPrompt):
    """CoOp's class-specific context over several words per class, ``[ctx_c × n_ctx] word.``
    (MediCLIP): a class's text feature is the mean of its words' unit features, re-normalised."""

    def __init__(self, backbone: Backbone, words: Sequence[Sequence[str]], n_ctx: int = 8, causal: bool = True) -> None:
        groups = [index for index, class_words in enumerate(words) for _ in class_words]
        flat = [w for class_words in words for w in class_words]
        super().__init__(backbone, [""], flat, n_ctx, context_groups=groups, causal=causal, trim=causal)
        self.register_buffer("word_class", torch.tensor(groups, device=self.ctx.device), persistent=False)
        self.register_buffer(
            "class_words", torch.tensor([len(w) for w in words], device=self.ctx.device), persistent=False
        )

    def text_features(self, backbone: Backbone) -> torch.Tensor:
        """[1, C, D] unit-norm class features (one view)."""
        words = super().text_features(backbone)[0]  # [W, D]
        summed = words.new_zeros(len(self.class_words), words.shape[-1]).index_add(0, self.word_class, words)
        return F.normalize(summed / self.class_words[:, None], dim=-1)[None]
