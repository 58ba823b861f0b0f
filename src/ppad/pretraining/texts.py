"""Labels turned into texts, as CXR-CLIP does for image–label data sets.

Each finding has a set of sentences a radiologist might write; a label set becomes either one
sentence per finding, or a pseudo-report (one sentence per finding, shuffled, joined). An image
with no finding gets one of several normal phrasings. Bare class words ("pneumonia", "normal")
are in the sets so that the zero-shot prompts of ``ppad`` land in the trained text space.
``COVID-19`` (the cxr-pool's label) has its own sentences: named as what it is, a viral
pneumonia with bilateral peripheral ground-glass opacities, never silently folded into NIH's
``Pneumonia``; the bare word "pneumonia" is not among them (it stays NIH's finding).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ppad.errors import DataError
from ppad.pretraining.reports import SAMPLING_RULE

NO_FINDING = "No Finding"

NORMAL_TEXTS = (
    "normal",
    "no finding",
    "normal chest x-ray.",
    "The lungs are clear.",
    "No acute cardiopulmonary process.",
    "No focal consolidation, effusion or pneumothorax.",
    "Heart size is normal and the lungs are clear.",
    "No acute abnormality.",
)

FINDING_TEXTS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "atelectasis",
        "There is atelectasis.",
        "Volume loss consistent with atelectasis.",
        "Linear opacities suggest subsegmental atelectasis.",
    ),
    "Cardiomegaly": (
        "cardiomegaly",
        "The heart is enlarged.",
        "There is cardiomegaly.",
        "Enlarged cardiac silhouette.",
    ),
    "COVID-19": (
        "covid-19",
        "COVID-19 pneumonia.",
        "Viral pneumonia.",
        "Bilateral peripheral ground-glass opacities.",
        "Multifocal patchy opacities consistent with COVID-19 pneumonia.",
        "Bilateral lower-zone airspace opacities of viral pneumonia.",
    ),
    "Consolidation": (
        "consolidation",
        "There is focal consolidation.",
        "Airspace consolidation is present.",
        "Dense consolidation of the lung.",
    ),
    "Edema": (
        "edema",
        "There is pulmonary edema.",
        "Interstitial edema is present.",
        "Findings consistent with pulmonary edema.",
    ),
    "Effusion": (
        "effusion",
        "There is a pleural effusion.",
        "Blunting of the costophrenic angle from effusion.",
        "Pleural effusion is present.",
    ),
    "Emphysema": (
        "emphysema",
        "The lungs are hyperinflated with emphysema.",
        "There is emphysema.",
        "Emphysematous changes are seen.",
    ),
    "Fibrosis": (
        "fibrosis",
        "There is pulmonary fibrosis.",
        "Reticular opacities consistent with fibrosis.",
        "Fibrotic changes of the lungs.",
    ),
    "Hernia": ("hernia", "There is a hiatal hernia.", "A hernia is present.", "Retrocardiac hernia."),
    "Infiltration": (
        "infiltration",
        "There is an infiltrate.",
        "Patchy infiltrates are present.",
        "Pulmonary infiltration is seen.",
    ),
    "Mass": ("mass", "There is a lung mass.", "A pulmonary mass is seen.", "A mass lesion is present."),
    "Nodule": ("nodule", "There is a pulmonary nodule.", "A nodular opacity is seen.", "A lung nodule is present."),
    "Pleural_Thickening": (
        "pleural thickening",
        "There is pleural thickening.",
        "The pleura is thickened.",
        "Apical pleural thickening.",
    ),
    "Pneumonia": (
        "pneumonia",
        "There is pneumonia.",
        "Findings consistent with pneumonia.",
        "Airspace opacity concerning for pneumonia.",
        "Patchy opacities suggest pneumonia.",
    ),
    "Pneumothorax": (
        "pneumothorax",
        "There is a pneumothorax.",
        "A pneumothorax is present.",
        "Visible pleural line from a pneumothorax.",
    ),
}


def parse_findings(text: str) -> tuple[str, ...]:
    """NIH-style ``A|B`` findings → a sorted tuple; ``No Finding`` (or empty) → ()."""
    findings = tuple(sorted({part.strip() for part in text.split("|") if part.strip()} - {NO_FINDING}))
    unknown = [name for name in findings if name not in FINDING_TEXTS]
    if unknown:
        raise DataError(f"unknown findings {unknown}; known: {', '.join(FINDING_TEXTS)} or {NO_FINDING!r}")
    return findings


def label_text(findings: tuple[str, ...], rng: np.random.Generator) -> str:
    """One text for a label set: a normal phrasing, one sentence of one finding, or a pseudo-report."""
    if not findings:
        return str(rng.choice(NORMAL_TEXTS))
    if rng.random() < 0.5:
        return str(rng.choice(FINDING_TEXTS[findings[rng.integers(len(findings))]]))
    sentences = [str(rng.choice(FINDING_TEXTS[name][1:])) for name in findings]
    rng.shuffle(sentences)
    return " ".join(sentences)


def text_pool(findings: tuple[str, ...], size: int, rng: np.random.Generator) -> list[str]:
    """``size`` texts for a label set (repeats allowed), drawn with ``label_text``."""
    return [label_text(findings, rng) for _ in range(size)]


def texts_digest() -> str:
    """SHA-256 of every sentence set and of the report-sampling rule's version: cached text
    embeddings are only reused for the same texts."""
    return hashlib.sha256(json.dumps([NORMAL_TEXTS, FINDING_TEXTS, SAMPLING_RULE], sort_keys=True).encode()).hexdigest()
