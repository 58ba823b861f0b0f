"""Free-text radiology reports turned into the text samples of CXR-CLIP pre-training.

Sections. A report held in one text is cut at its headings: a known heading word (or words), any case, followed
by ``:``, at the start of the text or of a line, or right after a sentence end (``.``, ``!``, ``?``) or another
heading's ``:`` (an empty section). Known headings: FINDINGS, IMPRESSION, COMPARISON, INDICATION, HISTORY, CLINICAL
HISTORY, TECHNIQUE, EXAMINATION, CONCLUSION, RECOMMENDATION(S), NOTE. Only the FINDINGS and IMPRESSION bodies are
kept when any of them is non-empty (what CXR-CLIP trains on); otherwise every non-empty body is kept, the text
before the first heading included; a text without any heading is one section. A table may instead carry its
sections in the columns ``findings`` and ``impression``; a row's section columns win over its ``report`` column
(:func:`report_sections`).

Sentences. A section is cut after ``.``, ``!`` or ``?`` (closing quotes or brackets may follow) that ends a word,
but not after a known abbreviation (``Dr.``, ``e.g.``, ``i.e.``, ``vs.``, ``approx.``, …), a single capital
initial (``A.``), ``No.`` before a number, nor a list number opening a sentence (``1.``). Decimals (``2.5 cm``) never
end a sentence, nor do newlines or ``;``. Whitespace is collapsed to single spaces.

Token budget. Every text fed to the tokenizer fits ``budget`` tokens (its context length less the start and end
tokens), so truncation never cuts a sentence: a sentence alone too long is split at word boundaries into pieces
that fit (:func:`fit_pieces`); only a single word longer than the budget is left to the tokenizer to cut.

Samples (CXR-CLIP's augmentation of reports). One text of a section: its sentences shuffled, a random number of
them kept (uniform between half, rounded up, and all), then sentences dropped from the end until the joined text
fits the budget, never below one. One positive pair of a report: samples of two different sections, chosen at
random, or two independent samples of its only section.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

SECTION_HEADINGS = ("findings", "impression")

SAMPLING_RULE = 1  # raise when splitting or sampling changes: cached text embeddings are then rebuilt

_OTHER_HEADINGS = (
    "comparison",
    "indication",
    r"clinical\s+history",
    "history",
    "technique",
    "examination",
    "conclusion",
    "recommendations?",
    "note",
)
_HEADING = re.compile(
    r"(?:^|(?<=[.!?:]))\s*(?P<name>" + "|".join((*SECTION_HEADINGS, *_OTHER_HEADINGS)) + r")\s*:",
    re.IGNORECASE | re.MULTILINE,
)
_ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "prof", "st", "vs", "approx", "e.g", "i.e", "cf", "fig"})
_CLOSERS = "\"')]"
_OPENERS = "\"'(["


def _collapse(text: str) -> str:
    """``text`` with runs of whitespace made single spaces, stripped."""
    return " ".join(text.split())


def split_sections(report: str) -> list[str]:
    """A report in one text → its section bodies, in order (see the module docstring for which are kept)."""
    matches = list(_HEADING.finditer(report))
    ends = [m.start() for m in matches[1:]] + [len(report)]
    named = [(m["name"].lower(), _collapse(report[m.end() : end])) for m, end in zip(matches, ends)]
    kept = [body for name, body in named if name in SECTION_HEADINGS and body]
    if kept:
        return kept
    preamble = _collapse(report[: matches[0].start()] if matches else report)
    return [body for body in (preamble, *(body for _, body in named)) if body]


def _ends_sentence(word: str, following: str, opens_sentence: bool) -> bool:
    """Whether a sentence ends after ``word`` (the next word is ``following``; ``opens_sentence``: ``word`` is the
    sentence's first)."""
    core = word.rstrip(_CLOSERS)
    if not core.endswith((".", "!", "?")):
        return False
    if not core.endswith("."):
        return True
    stem = core[:-1].lstrip(_OPENERS)
    return not (
        stem.lower() in _ABBREVIATIONS
        or (len(stem) == 1 and stem.isupper())
        or (stem.lower() == "no" and following[:1].isdigit())
        or (opens_sentence and stem.isdigit())
    )


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, whitespace collapsed (see the module docstring for where it is cut)."""
    words = text.split()
    found: list[str] = []
    current: list[str] = []
    for word, following in zip(words, [*words[1:], ""]):
        current.append(word)
        if _ends_sentence(word, following, len(current) == 1):
            found.append(" ".join(current))
            current = []
    if current:
        found.append(" ".join(current))
    return found


def _word_pieces(sentence: str, count_tokens: Callable[[str], int], budget: int) -> list[str]:
    """``sentence`` cut at word boundaries into consecutive pieces, each as many whole words as fit ``budget``."""
    pieces: list[str] = []
    current: list[str] = []
    for word in sentence.split():
        if current and count_tokens(" ".join([*current, word])) > budget:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def fit_pieces(parts: list[str], count_tokens: Callable[[str], int], budget: int) -> list[str]:
    """``parts`` (sentences) with each one that alone exceeds ``budget`` tokens split at word boundaries into
    consecutive pieces that fit, greedily (as many whole words as fit); the others unchanged, order kept. A single
    word longer than the budget becomes a piece of its own: the tokenizer will cut that one word, the only cut
    left to it and never one inside a text of other words."""
    fitted: list[str] = []
    for part in parts:
        fitted.extend([part] if count_tokens(part) <= budget else _word_pieces(part, count_tokens, budget))
    return fitted


def sample_text(parts: list[str], rng: np.random.Generator, count_tokens: Callable[[str], int], budget: int) -> str:
    """One draw from a section's sentences (already fitted by :func:`fit_pieces`): their order shuffled, the first
    ``m`` kept, ``m`` uniform in [ceil(n/2), n], then sentences dropped from the end until the text (joined with
    single spaces) fits ``budget`` tokens; at least one always remains. Raises ValueError for no sentences."""
    if not parts:
        raise ValueError("a section to sample needs at least one sentence")
    n = len(parts)
    kept = [parts[i] for i in rng.permutation(n)[: rng.integers((n + 1) // 2, n, endpoint=True)]]
    while len(kept) > 1 and count_tokens(" ".join(kept)) > budget:
        kept.pop()
    return " ".join(kept)


def report_pair(
    sections: list[list[str]], rng: np.random.Generator, count_tokens: Callable[[str], int], budget: int
) -> tuple[str, str]:
    """Two texts of one report for one positive pair of the text contrastive loss. ``sections``: each section's
    fitted sentences (non-empty lists). With two or more sections, one sample from each of two different sections
    chosen at random; with one section, two independent samples of it. Raises ValueError for no sections."""
    if not sections:
        raise ValueError("a report pair needs at least one section")
    first, second = rng.choice(len(sections), size=2, replace=False) if len(sections) > 1 else (0, 0)
    return (
        sample_text(sections[first], rng, count_tokens, budget),
        sample_text(sections[second], rng, count_tokens, budget),
    )


def report_sections(texts: dict[str, str]) -> list[str]:
    """The sections of one table row: ``texts`` maps a column name ('report', 'findings', 'impression') to its cell
    (possibly empty). The non-empty section columns are the sections (in that order); without any, the 'report'
    cell split by :func:`split_sections`. Empty when every cell is empty."""
    columns = [_collapse(texts.get(name, "")) for name in SECTION_HEADINGS]
    return [cell for cell in columns if cell] or split_sections(texts.get("report", ""))
