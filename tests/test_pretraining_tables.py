"""Pre-training's inputs: tables with reports, sections and studies; epoch plans; rows on disk."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ppad.data.layouts import LayoutError
from ppad.pretraining.data import Cache, Layout, plan_layout, text_pairs_of
from ppad.pretraining.films import Film, films_digest, read_table
from ppad.pretraining.loop import EpochPlan, epoch_plan, global_batches, study_members
from ppad.pretraining.rows import RowFile
from tests.conftest import SHARED_DATA

NOTES = SHARED_DATA / "cxr-notes"
needs_notes = pytest.mark.skipif(
    not (NOTES / "labels.csv").is_file(), reason=f"real cxr-notes films not found at {NOTES}"
)


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_findings_is_the_label_column_only_when_it_holds_finding_names(tmp_path):
    labelled = _write(
        tmp_path / "labelled.csv",
        [
            {"image": "a.png", "findings": "Effusion|Pneumonia", "report": "Left effusion. No pneumothorax.",
             "split": "train", "study": "s1"},
            {"image": "b.png", "findings": "No Finding", "report": "", "split": "val", "study": "s1"},
        ],
    )  # fmt: skip
    table = read_table(labelled)
    assert table.columns == {"labels": "findings", "text": ["report"], "study": "study"}
    assert [f.findings for f in table.films] == [("Effusion", "Pneumonia"), ()]
    assert table.films[0].sections == ("Left effusion. No pneumothorax.",) and table.films[1].sections == ()
    assert {f.study for f in table.films} == {"s1"}
    sectioned = _write(
        tmp_path / "mimic.csv",
        [
            {"path": "a.png", "findings": "The lungs are clear.", "impression": "No acute process.", "split": "train"},
            {"path": "b.png", "findings": "", "impression": "Small left effusion.", "split": "train"},
        ],
    )
    table = read_table(sectioned)
    assert table.columns == {"labels": None, "text": ["findings", "impression"], "study": None}
    assert table.films[0].sections == ("The lungs are clear.", "No acute process.")
    assert table.films[1].sections == ("Small left effusion.",) and table.films[0].findings is None


def test_a_report_with_headings_is_split_and_a_row_without_text_or_labels_is_refused(tmp_path):
    report = "INDICATION: cough. FINDINGS: Patchy right basal opacity. IMPRESSION: Right lower lobe pneumonia."
    table = _write(tmp_path / "r.csv", [{"image": "a.png", "report": report, "split": "train"}])
    assert read_table(table).films[0].sections == ("Patchy right basal opacity.", "Right lower lobe pneumonia.")
    empty = _write(tmp_path / "e.csv", [{"image": "a.png", "report": "x", "split": "train"}, {
        "image": "b.png", "report": " ", "split": "train"}])  # fmt: skip
    with pytest.raises(LayoutError, match=r"e\.csv:3: neither labels nor report text"):
        read_table(empty)
    (tmp_path / "short.csv").write_text("image,findings,split\na.png,Pneumonia,train\n,No Finding,train\nb.png\n")
    with pytest.raises(LayoutError, match=r"short\.csv:3: no image"):
        read_table(tmp_path / "short.csv")  # an empty path or a short row: its line, not a traceback
    unknown = _write(tmp_path / "u.csv", [{"image": "a.png", "findings": "Pneumona", "split": "train"}])
    with pytest.raises(LayoutError, match=r"u\.csv:2: unknown findings \['Pneumona'\]"):
        read_table(unknown)  # a misspelt label is an error, never silently read as text


def test_the_digest_changes_with_the_report_and_the_study():
    film = Film(Path("/nonexistent/a.png"), ("Pneumonia",), "train", source="t")
    digests = {
        films_digest([film]),
        films_digest([Film(film.path, film.findings, "train", source="t", sections=("A.",))]),
        films_digest([Film(film.path, film.findings, "train", source="t", study="s")]),
    }
    assert len(digests) == 3


def _films(specs: list[tuple[str, str, str]]) -> list[Film]:
    """(study, report, split) → films of one table."""
    return [
        Film(Path(f"f{i}.png"), ("Pneumonia",), split, source="t", sections=(report,) if report else (), study=study)
        for i, (study, report, split) in enumerate(specs)
    ]


def test_studies_group_films_and_share_their_first_films_text():
    films = _films([("s1", "A.", "train"), ("s1", "A.", "train"), ("", "B.", "train"), ("", "", "train"),
                    ("s2", "A.", "train"), ("s2", "C.", "train"), ("", "", "val")])  # fmt: skip
    layout = plan_layout(films)
    assert layout.study_of.tolist() == [0, 0, 1, 2, 3, 3]  # a film without a study is one of its own
    keys = layout.text_keys
    assert keys == [("report", ("A.",)), ("report", ("B.",)), ("labels", ("Pneumonia",)), ("report", ("C.",))]
    assert layout.study_texts.tolist() == [0, 1, 2, 0]  # s1 and s2 share report A: positives of each other
    assert layout.mixed_text_studies == 1 and layout.val_labels.tolist() == [1]


def _cache(layout: Layout, views: int = 3, pairs: int = 4, ok=None) -> Cache:
    ok = np.ones(len(layout.train), dtype=bool) if ok is None else ok
    return Cache(layout, views, pairs, *([None] * 5), film_ok=ok, val_ok=np.ones(len(layout.val), dtype=bool))


def test_an_epoch_draws_studies_and_pairs_two_films_of_one_study():
    films = _films([("s1", "A.", "train"), ("s1", "A.", "train"), ("s1", "A.", "train"), ("", "B.", "train"),
                    ("", "", "train"), ("s9", "", "val")])  # fmt: skip
    cache = _cache(plan_layout(films))
    members = study_members(cache)
    assert [m.tolist() for m in members] == [[0, 1, 2], [3], [4]]
    for seed in range(20):
        plan = epoch_plan(cache, members, [1.0], np.random.default_rng(seed))
        assert len(plan.texts) == 3  # one draw per study, not per film
        for (a, b), (va, vb) in zip(plan.films, plan.views):
            if a in (0, 1, 2):
                assert b in (0, 1, 2) and a != b  # ICL positives: two films of the study
            else:
                assert a == b and va != vb  # a single film: two different views
        assert set(plan.pairs.tolist()) <= set(range(4))
    unreadable = _cache(plan_layout(films), ok=np.array([False, False, True, True, False]))
    plan = epoch_plan(unreadable, study_members(unreadable), [1.0], np.random.default_rng(0))
    assert sorted(plan.films[:, 0].tolist()) == [2, 3]  # a study without a readable film is not drawn


def test_global_batches_split_evenly_among_processes():
    assert global_batches(10, 4, 1) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert global_batches(11, 4, 2) == [slice(0, 4), slice(4, 8), slice(8, 10)]  # the tail trimmed to 2
    assert global_batches(9, 4, 4) == [slice(0, 4), slice(4, 8)]  # 1 left: fewer than the processes


def test_step_inputs_read_each_processes_slice_of_the_global_batch(tmp_path):
    from ppad.pretraining.distributed import Ranks
    from ppad.pretraining.loop import StepInputs

    films = _films([("", "", "train")] * 4 + [("", "", "val")])
    layout = plan_layout(films)
    files = {}
    for name, shape in (("train_pooled", (5,)), ("train_maps", (2, 1, 1)), ("texts", (2, 3))):
        rows = 4 * 2 if name != "texts" else 1 * 3
        files[name] = RowFile.create(tmp_path / f"{name}.npy", rows, shape, "float32")
        files[name].write(0, np.arange(rows * np.prod(shape), dtype=np.float32).reshape(rows, *shape))
    cache = Cache(layout, 2, 3, files["train_pooled"], files["train_maps"], None, None, files["texts"],
                  np.ones(4, dtype=bool), np.ones(1, dtype=bool))  # fmt: skip
    plan = EpochPlan(np.array([[0, 0], [3, 3]]), np.array([[0, 1], [1, 0]]), np.zeros(2, dtype=int), np.array([2, 1]))
    whole = StepInputs(cache, plan, [slice(0, 2)], Ranks())[0]
    halves = [StepInputs(cache, plan, [slice(0, 2)], Ranks(rank=r, world=2))[0] for r in (0, 1)]
    for key, value in whole.items():
        torch.testing.assert_close(torch.cat([half[key] for half in halves]), value, rtol=0, atol=0)
    assert whole["pooled0"][:, 0].tolist() == [0.0, 35.0] and whole["pooled1"][:, 0].tolist() == [5.0, 30.0]
    assert whole["texts"][:, 0, 0].tolist() == [12.0, 6.0]  # row = text source · pairs + pair


def test_row_files_read_any_rows_in_any_process(tmp_path):
    values = np.random.default_rng(0).standard_normal((50, 3, 4)).astype(np.float16)
    rows = RowFile.create(tmp_path / "x.npy", 50, (3, 4), "float16")
    rows.write(10, values[10:30])
    rows.write(0, values[:10])
    rows.write(30, values[30:])
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), values)  # a plain .npy file
    picks = [49, 3, 4, 5, 3, 0, 17]
    np.testing.assert_array_equal(rows.read(picks), values[picks])  # any order, repeats, runs
    copy = pickle.loads(pickle.dumps(rows))  # what a DataLoader worker gets: its own descriptor
    np.testing.assert_array_equal(copy.read([7, 8]), values[[7, 8]])
    loader = torch.utils.data.DataLoader(_Rows(rows), batch_size=None, num_workers=2)
    np.testing.assert_array_equal(np.concatenate([batch.numpy() for batch in loader]), values[:20])
    with pytest.raises(ValueError, match="do not fit"):
        rows.write(45, values[:10])
    with pytest.raises(IndexError):
        rows.read([50])


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: RowFile) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.rows.read(range(index * 5, index * 5 + 5)))


@needs_notes
def test_real_notes_become_text_pairs_within_the_text_towers_context():
    from ppad.backbones.dual_tower import DualTowerSpec, build_text_tower

    _, tokenizer = build_text_tower(DualTowerSpec())
    table = read_table(NOTES)
    assert table.columns == {"labels": "findings", "text": ["report"], "study": "study"}
    layout = plan_layout(table.films)
    reports = [key for key in layout.text_keys if key[0] == "report"]
    assert len(reports) == len(layout.text_keys) and len(layout.study_texts) < len(layout.train)
    budget, long = tokenizer.context_length - 2, 0
    for index, key in enumerate(reports[:80]):
        whole = " ".join(key[1])
        long += len(tokenizer.encode(whole)) > budget
        pairs = text_pairs_of(key, 2, np.random.default_rng(index), tokenizer)
        for text in (t for pair in pairs for t in pair):
            assert 0 < len(tokenizer.encode(text)) <= budget  # never cut by the tokenizer
            assert set(text.split()) <= set(whole.split())  # whole words of the note only
    assert long > 10  # many notes are longer than the context: sampling, not truncation, fits them


@needs_notes
def test_an_interrupted_cache_encodes_only_its_unfinished_units_and_the_same_rows(tmp_path, caplog):
    from ppad.backbones import DualTowerBackbone, DualTowerSpec
    from ppad.pretraining.data import PretrainSettings, cached_tower_outputs

    films = read_table(NOTES).films
    val = [f for f in films if f.split == "val" and f.findings == ()] + [f for f in films if f.split == "val"][:1]
    films = [f for f in films if f.split == "train"][:5] + val
    backbone, settings = DualTowerBackbone(DualTowerSpec(trained_stages=1)), PretrainSettings(views=2, text_pairs=2)
    first = cached_tower_outputs(tmp_path / "cache", {"id": 1}, backbone, films, settings, progress=False)
    maps = first.train_maps.read(range(10))
    done = RowFile(tmp_path / "cache" / "done.npy")
    assert done.read(range(3)).tolist() == [1, 1, 1]  # train films, val films, texts
    done.write(0, np.zeros(1, dtype=np.uint8))  # as if killed while encoding the training films
    with caplog.at_level("INFO", logger="ppad"):
        again = cached_tower_outputs(tmp_path / "cache", {"id": 1}, backbone, films, settings, progress=False)
    assert "encoding 1 of 3 cache units" in caplog.text and again.encoding_seconds is not None
    np.testing.assert_array_equal(again.train_maps.read(range(10)), maps)  # a unit's augmentations are its own
    assert first.film_ok.all() and again.val_ok.tolist() == [True, True]
    caplog.clear()
    with caplog.at_level("INFO", logger="ppad"):
        cached_tower_outputs(tmp_path / "cache", {"id": 2}, backbone, films, settings, progress=False)
    assert "encoding 3 of 3" in caplog.text  # another identity: built anew
