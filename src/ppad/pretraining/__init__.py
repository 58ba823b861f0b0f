"""CXR-CLIP pre-training of a dual-tower backbone on films with labels and reports (``ppad pretrain``)."""

from ppad.pretraining.data import PretrainSettings
from ppad.pretraining.films import Film, Table, films_digest, normal_films, read_films, read_table
from ppad.pretraining.losses import cxr_clip_loss, multi_positive_contrastive, soft_targets
from ppad.pretraining.pretrain import pretrain
from ppad.pretraining.selection import zero_shot_auc
from ppad.pretraining.texts import FINDING_TEXTS, NORMAL_TEXTS, label_text, parse_findings, text_pool

__all__ = [
    "FINDING_TEXTS",
    "NORMAL_TEXTS",
    "Film",
    "PretrainSettings",
    "Table",
    "cxr_clip_loss",
    "films_digest",
    "label_text",
    "multi_positive_contrastive",
    "normal_films",
    "parse_findings",
    "pretrain",
    "read_films",
    "read_table",
    "soft_targets",
    "text_pool",
    "zero_shot_auc",
]
