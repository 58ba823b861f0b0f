"""Errors and honesty (issue 27): unreadable test films in ``ppad evaluate``, images too large by their
header, oversized HTTP headers, bad manifest rows, the ``auto`` map order in ``--help``."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ppad.choices import MAP_AUTO_ORDER
from tests.conftest import ZHANGLAB, needs_zhanglab, run_ppad

TRAIN = ["--backbone", "tiny", "--epochs", "1", "--shots", "8", "--val-size", "8", "--n-ctx", "4"]
QUIET = ["--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, demo_data) -> Path:
    """One tiny-backbone run for the module, trained as a user trains one."""
    run = tmp_path_factory.mktemp("outputs-errors") / "run"
    done = run_ppad("train", "--data", demo_data, "--out", run, *TRAIN, *QUIET)
    assert done.returncode == 0, done.stderr
    return run


def stderr_lines(done, prefix: str) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith(prefix)]


# --- 10: ppad evaluate lists each unreadable test film -------------------------------------------
@needs_zhanglab
def test_evaluate_lists_each_unreadable_test_film_on_stderr_and_counts_it(run_dir, tmp_path):
    data = tmp_path / "data"
    for folder in ("normal", "pneumonia"):
        (data / "test" / folder).mkdir(parents=True)
        for film in sorted((ZHANGLAB / "test" / folder).iterdir())[:3]:
            shutil.copy(film, data / "test" / folder / film.name)
    whole = sorted((ZHANGLAB / "test" / "pneumonia").iterdir())[3].read_bytes()
    cut = data / "test" / "pneumonia" / "cut.jpeg"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "evaluation"

    done = run_ppad("evaluate", "--run", run_dir, "--data", data, "--out", out, "--bootstrap", "10", *QUIET)

    assert done.returncode == 0, done.stderr
    (skipped,) = stderr_lines(done, "skipped: ")
    assert skipped.startswith(f"skipped: {cut}: cannot be decoded (OSError: image file is truncated"), skipped
    assert done.stdout.splitlines()[-1] == "evaluated 6 test images (1 unreadable)"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [item["path"] for item in metrics["unreadable"]] == [str(cut)]
    assert skipped == f"skipped: {cut}: {metrics['unreadable'][0]['error']}"


# --- 11: one ppad message for any image too large by its header --------------------------------
def header_only_png(width: int, height: int) -> bytes:
    """A 1×1 PNG whose header claims ``width`` × ``height`` (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(buffer, format="PNG")
    png = buffer.getvalue()
    header = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:29]
    return png[:12] + header + zlib.crc32(header).to_bytes(4, "big") + png[33:]


SIZES = {8000: "8000×8000 = 64,000,000", 100_000: "100000×100000 = 10,000,000,000"}


def test_score_words_every_too_large_image_alike(run_dir, demo_data, tmp_path):
    films = []
    for side in SIZES:
        films.append(tmp_path / f"big{side}.png")
        films[-1].write_bytes(header_only_png(side, side))
    good = sorted((demo_data / "test" / "normal").iterdir())[0]
    out = tmp_path / "scores.csv"

    done = run_ppad("score", "--run", run_dir, *films, good, "--out", out, *QUIET)

    assert done.returncode == 0, done.stderr
    expected = [f"{film}: has {SIZES[side]} pixels, more than 50,000,000" for film, side in zip(films, SIZES)]
    assert stderr_lines(done, "skipped: ") == [f"skipped: {message}" for message in expected]
    assert "decompression" not in done.stderr.lower() and "DOS attack" not in out.read_text()
    assert "scored 1 images (2 unreadable)" in done.stdout


def test_the_service_words_every_too_large_image_alike(run_dir):
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'ppad[serve]'")
    from fastapi.testclient import TestClient

    from ppad.serve import ServeLimits
    from ppad.serve.app import build_app
    from ppad.serve.model import ServedModel

    with TestClient(build_app(ServedModel.load(run_dir, device="cpu"), ServeLimits())) as client:
        for side, size in SIZES.items():
            upload = {"file": (f"big{side}.png", header_only_png(side, side), "image/png")}
            response = client.post("/v1/score", files=upload)
            assert response.status_code == 413, response.text
            assert response.json() == {
                "error": "image_too_large",
                "detail": f"big{side}.png has {size} pixels, more than 36,000,000",
                "filename": f"big{side}.png",
            }


# --- 12: an oversized HTTP header gets ppad's JSON, from a live server --------------------------
def test_a_200_kb_header_gets_a_json_431_from_a_live_server(run_dir, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'ppad[serve]'")
    from ppad.serve.limits import MAX_HEADER_BYTES
    from tests.test_serve import live_server

    with live_server(run_dir, tmp_path / "serve.log") as url:
        assert url.startswith("http://127.0.0.1:")
        big = httpx.get(f"{url}/v1/health", headers={"x-padding": "a" * 200_000}, timeout=30)
        fine = httpx.get(f"{url}/v1/health", headers={"x-padding": "a" * 20_000}, timeout=30)

    assert big.status_code == 431 and big.headers["content-type"] == "application/json"
    body = big.json()
    assert body["error"] == "headers_too_large" and body["filename"] is None
    assert body["detail"].endswith(f"bytes, more than {MAX_HEADER_BYTES:,}")
    assert fine.status_code == 200 and fine.json()["status"] == "ok"


# --- 13: a bad manifest row names the bad field only --------------------------------------------
@pytest.mark.parametrize(
    "rows, message",
    [
        (
            "a.png,normal,train\nb.png,bacterial,test\n",
            "{csv}:3: bad label 'bacterial'; allowed: 0, 1, abnormal, normal, pneumonia",
        ),
        ("a.png,normal,validation\n", "{csv}:2: bad split 'validation'; allowed: train, test or empty (both)"),
    ],
    ids=["label", "split"],
)
def test_a_bad_manifest_row_names_its_field_value_and_the_allowed_values(tmp_path, rows, message):
    csv = tmp_path / "list.csv"
    csv.write_text("path,label,split\n" + rows)

    done = run_ppad("train", "--data", csv, "--out", tmp_path / "run", *TRAIN, *QUIET)

    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert stderr_lines(done, "error: ") == ["error: " + message.format(csv=csv)]
    other = "split" if "label" in message else "label"
    assert other not in stderr_lines(done, "error: ")[0]


# --- 15: --map-method auto's help lists the registry's order ------------------------------------
def test_map_method_help_lists_what_auto_tries_in_the_registry_order(monkeypatch):
    from ppad.maps import registry

    done = run_ppad("score", "--help")
    text = " ".join(done.stdout.split())
    listed = text.split("'auto' takes the first that applies to the run's method (")[1].split(")")[0].split(", ")
    assert listed == list(MAP_AUTO_ORDER)
    assert sorted(listed) == sorted(registry.MAP_METHODS)
    for first in range(len(listed)):  # only the listed methods from `first` on apply: auto takes `first`
        for name in listed:
            applies = listed.index(name) >= first
            method = dataclasses.replace(registry.MAP_METHODS[name], applies=lambda model, ok=applies: ok)
            monkeypatch.setitem(registry.MAP_METHODS, name, method)
        assert registry.resolve_map_method(object(), "auto") == listed[first]
