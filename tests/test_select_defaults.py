"""The default detector: the selection rule, its benchmark on a small real setting, and what the CLI runs by default."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ppad.methods import get_method
from ppad.methods.defaults import PAPER_METHOD, default_detector
from tests.conftest import SHARED_DATA as DATA_ROOT

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "select_defaults.py"


def load_script():
    spec = importlib.util.spec_from_file_location("select_defaults", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_rule_floor_then_mean_rank_then_mean_auc() -> None:
    select = load_script()
    table = {
        "nih": {"a": [0.90, 0.92], "b": [0.80, 0.80], "c": [0.99, 0.99], "d": [0.70, 0.70]},
        "pool": {"a": [0.80, 0.80], "b": [0.85, 0.85], "c": [0.99, 0.99], "d": [0.60, 0.60]},
        "zhanglab": {"a": [0.70, 0.70], "b": [0.75, 0.75], "c": [0.50, 0.50], "d": [0.60, 0.60]},
    }
    best, summary = select.choose(table)
    assert not summary["c"]["above_floor"]  # best in two settings, below the floor in the third
    assert summary["a"]["mean_rank"] == pytest.approx((2 + 3 + 2) / 3)
    assert summary["b"]["mean_rank"] == pytest.approx((3 + 2 + 1) / 3)
    assert best == "b"
    assert summary["a"]["auc"]["nih"] == pytest.approx(0.91)


def test_candidate_names_become_method_settings() -> None:
    select = load_script()
    record = select.default_record("patch-knn lungs layers=2,3 window=3 top_k=10")
    assert record == {
        "method": "patch-knn",
        "settings": {"region_set": "lungs", "layers": [2, 3], "window": 3, "top_k": 10},
    }
    assert select.default_record("knn whole") == {"method": "knn", "settings": {"region_set": "whole"}}


def test_shipped_default_is_the_methods_own_defaults(cxr_lite) -> None:
    """The record names what ``--method NAME`` alone also runs on cxr-lite: the method's defaults are the
    chosen settings (its default layers, empty, are the backbone's first two dense layers)."""
    default = default_detector("cxr-lite")
    assert default.method != PAPER_METHOD and "validated default" in default.reason
    method = get_method(default.method)
    chosen = method.config(**default.overrides())
    assert replace(chosen, layers=()) == method.defaults
    assert method.build(cxr_lite, chosen).layers == method.build(cxr_lite).layers == tuple(chosen.layers)
    second = default_detector("cxr-lite-2")  # its stages 2 and 3 are cxr-lite's: the same choice, chosen again
    assert (second.method, second.settings) == (default.method, default.settings)
    assert default_detector("tiny").method == PAPER_METHOD


@pytest.mark.skipif(
    not all((DATA_ROOT / name).is_dir() for name in ("nih-cxr8", "cxr-pool", "zhanglab")),
    reason=f"real films (nih-cxr8, cxr-pool, zhanglab) not found under {DATA_ROOT}",
)
def test_select_defaults_runs_on_a_small_setting(tmp_path: Path) -> None:
    out = tmp_path / "selection.json"
    small = ("--draws", "1", "--shots", "4", "--nih-limit", "6", "--pool-films", "3", "--zhanglab-held-out", "4")
    command = [sys.executable, str(SCRIPT), "--data", str(DATA_ROOT), *small, "--syntheses", "sas", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    table = result["table"]
    assert {"knn lungs", "knn whole", "zeroshot"} <= set(table)
    assert any(name.startswith("patch-knn lungs") for name in table)
    for row in table.values():
        assert set(row["auc"]) == {"nih", "pool", "zhanglab"}
        assert all(0.0 <= auc <= 1.0 for auc in row["auc"].values())
    chosen = result["default"]
    assert chosen["candidate"] in table and f"default: {chosen['candidate']}" in done.stdout
    eligible = [name for name, row in table.items() if row["above_floor"]] or list(table)
    assert table[chosen["candidate"]]["mean_rank"] == min(table[name]["mean_rank"] for name in eligible)
