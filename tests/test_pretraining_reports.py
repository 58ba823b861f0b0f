"""Reports turned into CXR-CLIP text samples: sections, sentences, pieces within the token budget, draws, pairs."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from ppad.pretraining.reports import (
    fit_pieces,
    report_pair,
    report_sections,
    sample_text,
    sentences,
    split_sections,
)
from tests.conftest import SHARED_DATA

CXR_NOTES = SHARED_DATA / "cxr-notes" / "labels.csv"


def words(text: str) -> int:
    """A fake token counter: one token a word."""
    return len(text.split())


def test_findings_and_impression_are_the_sections_kept():
    report = "EXAMINATION: Chest PA.\nFINDINGS: Lungs are clear.\n  No effusion.\nIMPRESSION:\nNormal chest."
    assert split_sections(report) == ["Lungs are clear. No effusion.", "Normal chest."]


def test_headings_in_any_case_and_after_a_sentence_end():
    assert split_sections("findings: clear lungs. Impression: normal.") == ["clear lungs.", "normal."]
    assert split_sections("Comparison: none. FINDINGS: Small effusion.") == ["Small effusion."]


def test_other_headings_kept_only_without_findings_or_impression():
    report = "Fever for two days. History: 73 year old male. Clinical history: smoker.\nNote: portable film."
    assert split_sections(report) == ["Fever for two days.", "73 year old male.", "smoker.", "portable film."]


def test_headings_need_a_known_name_at_a_sentence_start():
    assert split_sections("Medical history: diabetes. CT findings: GGO.") == [
        "Medical history: diabetes. CT findings: GGO."
    ]


def test_plain_text_is_one_section_and_empty_bodies_are_dropped():
    assert split_sections("  Patchy opacities\n in both   lungs. ") == ["Patchy opacities in both lungs."]
    assert split_sections("FINDINGS:   IMPRESSION: Normal.") == ["Normal."]
    assert split_sections(" \n ") == []


def test_sentences_are_cut_after_sentence_ends_only():
    text = "Nodule of 2.5 cm. Seen by Dr. Smith; e.g. on film No. 3 by J. Doe vs. prior!\nStable?  (Unchanged.) Done"
    assert sentences(text) == [
        "Nodule of 2.5 cm.",
        "Seen by Dr. Smith; e.g. on film No. 3 by J. Doe vs. prior!",
        "Stable?",
        "(Unchanged.)",
        "Done",
    ]


def test_a_list_number_opens_a_sentence_but_a_number_may_end_one():
    assert sentences("1. Left effusion. 2. No pneumothorax. Stable since 2019. Good.") == [
        "1. Left effusion.",
        "2. No pneumothorax.",
        "Stable since 2019.",
        "Good.",
    ]


def test_fit_pieces_cuts_long_sentences_at_word_boundaries():
    long = " ".join(f"word{i}" for i in range(30))
    pieces = fit_pieces(["Short one.", long, "Another."], words, 8)
    assert pieces[0] == "Short one." and pieces[-1] == "Another."
    middle = pieces[1:-1]
    assert [words(p) for p in middle] == [8, 8, 8, 6]
    assert " ".join(middle).split() == long.split()


def test_fit_pieces_keeps_a_word_longer_than_the_budget_alone():
    count = len  # one token a character
    assert fit_pieces(["ab cd abcdefghij ef gh"], count, 5) == ["ab cd", "abcdefghij", "ef gh"]
    assert fit_pieces(["abcdefghij"], count, 5) == ["abcdefghij"]


PARTS = [f"Sentence {i} has four." for i in range(6)]  # four words each


def test_sample_text_draws_whole_shuffled_sentences_half_to_all():
    rng = np.random.default_rng(0)
    draws = [sample_text(PARTS, rng, words, 100) for _ in range(200)]
    chosen = [sentences(draw) for draw in draws]
    assert all(set(c) <= set(PARTS) and len(set(c)) == len(c) for c in chosen)
    assert Counter(len(c) for c in chosen).keys() == {3, 4, 5, 6}  # ceil(6/2) to 6
    assert len({tuple(c) for c in chosen if len(c) == 6}) > 1  # the order varies
    assert any(c[0] != PARTS[0] for c in chosen)


def test_sample_text_drops_sentences_to_fit_a_small_budget():
    rng = np.random.default_rng(1)
    for budget in (4, 9, 13):
        for _ in range(200):
            chosen = sentences(sample_text(PARTS, rng, words, budget))
            assert 1 <= len(chosen) <= budget // 4 and set(chosen) <= set(PARTS)


def test_sample_text_is_determined_by_the_seed():
    def draws(seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [sample_text(PARTS, rng, words, 14) for _ in range(20)]

    assert draws(7) == draws(7) and draws(7) != draws(8)


def test_sample_text_needs_a_sentence():
    with pytest.raises(ValueError):
        sample_text([], np.random.default_rng(0), words, 10)


def test_report_pair_takes_two_different_sections():
    sections = [[f"Section {s} part {i}." for i in range(3)] for s in range(3)]
    rng = np.random.default_rng(2)
    origins = []
    for _ in range(200):
        pair = report_pair(sections, rng, words, 100)
        first, second = ({int(text.split()[1]) for text in sentences(one)} for one in pair)
        assert len(first) == len(second) == 1 and first != second
        origins.append((*first, *second))
    assert len(set(origins)) == 6  # every ordered pair of sections


def test_report_pair_of_one_section_draws_it_twice():
    rng = np.random.default_rng(3)
    pairs = [report_pair([PARTS], rng, words, 100) for _ in range(50)]
    assert all(set(sentences(a)) <= set(PARTS) and set(sentences(b)) <= set(PARTS) for a, b in pairs)
    assert any(a != b for a, b in pairs)
    again = np.random.default_rng(3)
    assert [report_pair([PARTS], again, words, 100) for _ in range(50)] == pairs


def test_report_sections_prefers_section_columns():
    report = "FINDINGS: Clear. IMPRESSION: Normal."
    assert report_sections({"report": report, "findings": "", "impression": ""}) == ["Clear.", "Normal."]
    assert report_sections({"report": report, "impression": " Own  impression. "}) == ["Own impression."]
    assert report_sections({"findings": "F.", "impression": "I."}) == ["F.", "I."]
    assert report_sections({"report": " ", "findings": ""}) == []


@pytest.fixture(scope="module")
def tokenizer():
    """The text tower's tokenizer, as ``build_text_tower`` makes it (without building the BERT it comes with)."""
    from ppad.backbones.dual_tower import DualTowerSpec, WordPieceTokenizer
    from ppad.backbones.towers import get_tower

    spec = DualTowerSpec()
    return WordPieceTokenizer(get_tower(spec.text_tower).weights_path().parent / "tokenizer.json", spec.context_length)


@pytest.mark.skipif(not CXR_NOTES.is_file(), reason=f"real radiology notes not found at {CXR_NOTES}")
def test_real_notes_sample_within_the_tokenizer_budget(tokenizer):
    with CXR_NOTES.open(newline="") as f:
        notes = [row["report"] for row in csv.DictReader(f)]

    def count(text: str) -> int:
        return len(tokenizer.encode(text))

    budget = tokenizer.context_length - 2
    assert sum(count(note) > budget for note in notes) > len(notes) // 2  # most notes must be sampled to fit
    rng = np.random.default_rng(0)
    for note in notes:
        sections = [fit_pieces(sentences(section), count, budget) for section in report_sections({"report": note})]
        draw = sample_text(sections[rng.integers(len(sections))], rng, count, budget)
        assert draw and count(draw) <= budget
        assert set(draw.split()) <= set(note.split())
