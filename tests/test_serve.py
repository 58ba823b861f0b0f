"""The HTTP service through the ASGI test client: every success and error path, and the limits.

Also the helpers the live-server tests share (a small tiny-backbone run, a server subprocess).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ppad.data import discover, read_image
from ppad.data.readers import ImageReadError, ImageTooLargeError, read_image_bytes
from ppad.errors import PpadError
from ppad.methods import PPADConfig
from ppad.methods.inference import predict_views
from ppad.training import TrainSettings, train_run
from tests.test_data import RAMP, write_dicom

fastapi = pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'ppad[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from ppad.cli.serve import command as serve  # noqa: E402
from ppad.serve import ServeLimits  # noqa: E402
from ppad.serve.app import build_app  # noqa: E402
from ppad.serve.model import ServedModel  # noqa: E402

SETTINGS = TrainSettings(shots=4, epochs=1, batch_size=4, validation_size=4, seed=0)


# --- helpers shared with test_serve_load.py and test_serve_browser.py -------------------------
def train_tiny_run(out: Path, data: Path) -> Path:
    """A one-epoch PPAD run on the tiny backbone (a few seconds)."""
    train_run(data, out, "tiny", settings=SETTINGS, config=PPADConfig(n_ctx=4), device="cpu", progress=False)
    return out


def expected_score(served: ServedModel, path: Path) -> tuple[float, np.ndarray]:
    """What the library says about a film: PPAD's score and the view probabilities."""
    model = served.model
    views = predict_views(model, model.preprocessing.resize(read_image(path))[None])
    return float(model.aggregate(views)[0]), views[0]


@contextmanager
def live_server(run_dir: Path, log: Path, *options: str) -> Iterator[str]:
    """``ppad serve`` in a subprocess on a free loopback port; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "ppad.cli.serve", "--run", str(run_dir), "--port", str(port), "--device", "cpu"]
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as output:
        process = subprocess.Popen([*command, *options], stdout=output, stderr=subprocess.STDOUT, env=os.environ)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, f"ppad serve exited:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"ppad serve did not start:\n{log.read_text()}"
                try:
                    if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, demo_data) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("serve") / "run", demo_data)


@pytest.fixture(scope="module")
def served(run_dir) -> ServedModel:
    return ServedModel.load(run_dir, device="cpu")


@pytest.fixture(scope="module")
def served_patch_memory(tmp_path_factory, demo_data) -> ServedModel:
    """A patch memory on each film's lung fields (nothing to train)."""
    out = tmp_path_factory.mktemp("serve-patch") / "run"
    train_run(demo_data, out, "tiny", settings=SETTINGS, method="patch-knn", device="cpu", progress=False)
    return ServedModel.load(out, device="cpu")


@pytest.fixture(scope="module")
def films(demo_data) -> list[Path]:
    index = discover(demo_data)
    return [index.test[0].path, index.test[-1].path]


@pytest.fixture
def client(served) -> Iterator[TestClient]:
    with TestClient(build_app(served, ServeLimits())) as test_client:
        yield test_client


def post(client: TestClient, name: str, data: bytes, content_type: str = "application/octet-stream", **params):
    return client.post("/v1/score", params=params, files={"file": (name, data, content_type)})


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_error(response, status: int, error: str, filename: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["detail"], body
    assert body["filename"] == filename
    return body


# --- success paths ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "which, names",
    [
        ("served", ["left lung", "right lung", "upper lung", "lower lung", "whole image"]),
        ("served_patch_memory", ["patch memory"]),
    ],
    ids=["ppad", "patch-knn"],
)
def test_a_png_film_is_scored_like_the_library_scores_it(request, films, which, names):
    served: ServedModel = request.getfixturevalue(which)
    with TestClient(build_app(served, ServeLimits())) as client:
        responses = [post(client, path.name, path.read_bytes(), "image/png") for path in films]
    for path, response in zip(films, responses):
        assert response.status_code == 200, response.text
        body = response.json()
        score, views = expected_score(served, path)
        assert body["score"] == pytest.approx(score, abs=1e-6)
        assert list(body["views"]) == names
        np.testing.assert_allclose(list(body["views"].values()), views, atol=1e-6)
        assert body["top_view"] == list(body["views"])[int(np.argmax(views))]
        assert body["decision"] == ("abnormal" if score > body["threshold"] else "normal")
        assert (body["filename"], body["format"], body["threshold"]) == (path.name, "png", 0.5)
        assert (body["height"], body["width"]) == read_image(path).shape
        assert body["elapsed_ms"] > 0
        assert body["overlay_png"].startswith("iVBOR")  # base64 of the PNG signature


def test_jpeg_and_dicom_films_are_scored(client, tmp_path):
    jpeg = io.BytesIO()
    Image.fromarray((RAMP / 4).astype(np.uint8)).save(jpeg, format="JPEG")
    dicom = write_dicom(tmp_path / "film.dcm", RAMP).read_bytes()
    for name, data, expected in [
        ("film.jpg", jpeg.getvalue(), "jpeg"),
        ("film.dcm", dicom, "dicom"),
        ("IMG1", dicom, "dicom"),
    ]:
        body = post(client, name, data).json()
        assert (body["format"], body["width"], body["height"]) == (expected, 100, 20), body
        assert 0 <= body["score"] <= 1


def test_the_bytes_reader_reads_what_the_file_reader_reads(films, tmp_path):
    dicom = write_dicom(tmp_path / "m1.dcm", RAMP, "MONOCHROME1")
    for path in [films[0], dicom]:
        np.testing.assert_array_equal(read_image_bytes(path.read_bytes(), path.name), read_image(path))
    with pytest.raises(ImageTooLargeError, match=r"x\.dcm: has 100×20 = 2,000 pixels, more than 1,999"):
        read_image_bytes(dicom.read_bytes(), "x.dcm", max_pixels=1999)
    with pytest.raises(ImageReadError, match=r"cannot identify image file 'x\.png'"):
        read_image_bytes(b"\x89PNG\r\n\x1a\n...", "x.png")


def test_the_map_is_drawn_over_the_film_scaled_down(client, films):
    body = post(client, "tall.png", png_bytes(np.full((1500, 600), 128, np.uint8))).json()
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
    assert overlay.format == "PNG" and overlay.height == 1024 and overlay.width > 410  # film 410×1024 + a side panel
    assert post(client, "a.png", films[0].read_bytes(), map="false").json()["overlay_png"] is None


# --- bad uploads ------------------------------------------------------------------------------
def test_bad_films_get_a_4xx_naming_the_problem_and_the_file(client, films):
    png = films[0].read_bytes()
    jpeg = io.BytesIO()
    Image.fromarray((RAMP / 4).astype(np.uint8)).save(jpeg, format="JPEG")
    gif = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gif, format="GIF")
    cases = [
        ("empty.png", b"", 400, "empty_upload", "empty"),
        ("notes.txt", b"patient notes, not a film", 415, "unsupported_image_type", "not a PNG, JPEG or DICOM"),
        ("anim.gif", gif.getvalue(), 415, "unsupported_image_type", "not a PNG, JPEG or DICOM"),
        ("cut.png", png[: len(png) // 2], 422, "undecodable_image", "cannot be decoded"),
        ("cut.jpg", jpeg.getvalue()[:300], 422, "undecodable_image", "cannot be decoded"),
        ("fake.png", b"\x89PNG\r\n\x1a\n" + b"junk" * 50, 422, "undecodable_image", "cannot be decoded"),
        ("fake.dcm", b"not dicom at all", 422, "undecodable_image", "cannot be decoded"),
        ("line.png", png_bytes(np.zeros((1, 300), np.uint8)), 422, "undecodable_image", "not a 2-D image"),
    ]
    for name, data, status, error, words in cases:
        body = assert_error(post(client, name, data), status, error, name)
        assert body["detail"].startswith(name) and words in body["detail"], body


def test_requests_that_are_not_one_multipart_film_get_a_4xx(client, films):
    png = films[0].read_bytes()
    raw = client.post("/v1/score", content=png, headers={"content-type": "image/png"})
    assert "multipart/form-data" in assert_error(raw, 415, "unsupported_media_type")["detail"]
    assert_error(client.post("/v1/score"), 415, "unsupported_media_type")
    assert_error(client.post("/v1/score", files={"image": ("a.png", png)}), 400, "no_file")
    two = [("file", ("a.png", png)), ("file", ("b.png", png))]
    assert_error(client.post("/v1/score", files=two), 400, "too_many_files")
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    cut = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + png[:100]
    assert_error(client.post("/v1/score", content=cut, headers=headers), 400, "bad_multipart")
    assert_error(client.post("/v1/score", content=b"garbage\r\n--nope", headers=headers), 400, "bad_multipart")
    assert_error(post(client, "a.png", png, map="perhaps"), 422, "invalid_request")
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/score"), 405, "method_not_allowed")


def test_uploads_over_the_byte_limit_get_413(served, films):
    png = films[0].read_bytes()
    with TestClient(build_app(served, ServeLimits(max_upload_bytes=len(png) - 1))) as client:
        body = assert_error(post(client, "big.png", png), 413, "upload_too_large", "big.png")
        assert f"{len(png) - 1:,} bytes" in body["detail"]
        head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\n\r\n'
        chunks = [head, *(png[i : i + 1000] for i in range(0, len(png), 1000)), b"\r\n--xyz--\r\n"]
        headers = {"content-type": "multipart/form-data; boundary=xyz"}
        streamed = client.post("/v1/score", content=iter(chunks), headers=headers)  # no Content-Length
        assert_error(streamed, 413, "upload_too_large", "s.png")
        huge = ServeLimits().max_upload_bytes * 2
        declared = client.post("/v1/score", content=b"", headers={**headers, "content-length": str(huge)})
        assert_error(declared, 413, "upload_too_large")  # refused before reading


def test_films_over_the_pixel_limit_get_413_before_decoding(served, tmp_path):
    with TestClient(build_app(served, ServeLimits(max_pixels=224 * 224 - 1))) as client:
        body = assert_error(
            post(client, "wide.png", png_bytes(np.zeros((224, 224), np.uint8))), 413, "image_too_large", "wide.png"
        )
        assert "224×224 = 50,176 pixels, more than 50,175" in body["detail"]
        dicom = write_dicom(tmp_path / "big.dcm", np.zeros((300, 300), np.uint16)).read_bytes()
        assert_error(post(client, "big.dcm", dicom), 413, "image_too_large", "big.dcm")
        bomb = png_bytes(np.zeros((1, 1), np.uint8))  # a 1×1 PNG whose header claims 20000×20000
        header = b"IHDR" + (20000).to_bytes(4, "big") * 2 + bomb[24:29]
        bomb = bomb[:12] + header + zlib.crc32(header).to_bytes(4, "big") + bomb[33:]
        assert_error(post(client, "bomb.png", bomb), 413, "image_too_large", "bomb.png")
        assert post(client, "ok.png", png_bytes(np.zeros((224, 223), np.uint8))).status_code == 200


def test_uploads_are_never_written_to_disk(client, monkeypatch):
    """A 2 MB upload (Starlette's own form parser spools above 1 MiB) opens no file for writing."""
    writes = []
    watching = threading.Event()

    def audit(event: str, args: tuple) -> None:
        if not watching.is_set() or event != "open" or "__pycache__" in str(args[0]):
            return
        path, mode, flags = args
        if (isinstance(mode, str) and set(mode) & set("wax+")) or (flags or 0) & (os.O_WRONLY | os.O_RDWR):
            writes.append(path)

    sys.addaudithook(audit)
    film = png_bytes(np.random.default_rng(0).integers(0, 255, (1500, 1500), dtype=np.uint8))
    assert len(film) > 2_000_000
    watching.set()
    try:
        response = post(client, "big.png", film)
    finally:
        watching.clear()
    assert response.status_code == 200 and not writes, writes


# --- load, time and failures ------------------------------------------------------------------
@contextmanager
def blocked_scoring(served: ServedModel, monkeypatch) -> Iterator[threading.Event]:
    """Scoring waits until the yielded event is set."""
    release, original = threading.Event(), served.score

    def slow(*args, **kwargs):
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(served, "score", slow)
    try:
        yield release
    finally:
        release.set()


def wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_full_queue_answers_503_with_retry_after(served, films, monkeypatch):
    app = build_app(served, ServeLimits(max_concurrency=1, queue_size=1, retry_after_s=3))
    png = films[0].read_bytes()
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool, blocked_scoring(served, monkeypatch) as release:
        admitted = [pool.submit(post, client, f"{i}.png", png) for i in range(2)]  # one runs, one waits
        wait_for(lambda: client.get("/v1/health").json()["admitted"] == 2)
        refused = post(client, "third.png", png)
        assert_error(refused, 503, "busy")
        assert refused.headers["retry-after"] == "3"
        release.set()
        assert [future.result(10).status_code for future in admitted] == [200, 200]
        assert client.get("/v1/health").json()["admitted"] == 0


def test_a_request_over_its_time_answers_504_and_its_work_still_counts(served, films, monkeypatch):
    with TestClient(build_app(served, ServeLimits(timeout_s=0.3))) as client:
        with blocked_scoring(served, monkeypatch) as release:
            started = time.monotonic()
            body = assert_error(post(client, "slow.png", films[0].read_bytes()), 504, "timeout", "slow.png")
            assert time.monotonic() - started < 3 and "0.3 s" in body["detail"]
            assert client.get("/v1/health").json()["admitted"] == 1  # the thread is still busy
            release.set()
            wait_for(lambda: client.get("/v1/health").json()["admitted"] == 0)


def asgi_post(app, messages: list[dict], delay: float = 0.0) -> tuple[int, dict]:
    """POST /v1/score with hand-made ASGI receive messages (slow or broken clients)."""
    headers = [(b"content-type", b"multipart/form-data; boundary=xyz")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http"}
    scope |= {
        "path": "/v1/score",
        "raw_path": b"/v1/score",
        "query_string": b"",
        "headers": headers,
        "server": ("t", 80),
    }
    scope |= {"client": ("t", 1), "root_path": "", "app": app}
    pending, sent = list(messages), []

    async def receive() -> dict:
        await asyncio.sleep(delay)
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_a_slow_or_vanishing_upload_gets_408_or_400(served):
    app = build_app(served, ServeLimits(timeout_s=0.2))
    start = {"type": "http.request", "body": b"--xyz\r\n", "more_body": True}
    status, body = asgi_post(app, [start] * 5, delay=0.1)
    assert (status, body["error"]) == (408, "upload_timeout")
    status, body = asgi_post(app, [start])
    assert (status, body["error"]) == (400, "incomplete_upload")


def test_a_bug_is_a_json_500_and_the_server_goes_on(served, films, monkeypatch):
    with TestClient(build_app(served, ServeLimits()), raise_server_exceptions=False) as client:
        monkeypatch.setattr(served, "score", lambda *args, **kwargs: 1 / 0)
        body = assert_error(post(client, "a.png", films[0].read_bytes()), 500, "internal_error")
        assert "ZeroDivisionError" in body["detail"]
        monkeypatch.undo()
        assert post(client, "a.png", films[0].read_bytes()).status_code == 200
        assert client.get("/v1/health").json()["admitted"] == 0


# --- health, model, docs, page ----------------------------------------------------------------
def test_health_and_model_describe_the_run(client, run_dir):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["device"] == "cpu" and health["capacity"] == 10
    info = client.get("/v1/model").json()
    config = json.loads((run_dir / "config.json").read_text())
    assert info["backbone"] == config["backbone"] and len(info["backbone"]["fingerprint"]) == 64
    assert (info["method"], info["config"], info["run"]) == ("ppad", config, str(run_dir))
    assert info["views"] == ["left lung", "right lung", "upper lung", "lower lung", "whole image"]
    assert info["limits"] == ServeLimits().to_dict() and info["threshold"] == 0.5


def test_page_and_docs_load_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'id="file"' in page.text and "v1/score" in page.text
    assert "http://" not in page.text and "https://" not in page.text and '="//' not in page.text
    docs = client.get("/docs").text
    assert "cdn" not in docs.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/static-offline-docs/{asset}" in docs
        assert client.get(f"/static-offline-docs/{asset}").status_code == 200
    schema = client.get("/openapi.json").json()
    upload = schema["paths"]["/v1/score"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["required"] == ["file"]
    assert {"413", "415", "422", "503", "504"} <= set(schema["paths"]["/v1/score"]["post"]["responses"])


# --- limits and command line ------------------------------------------------------------------
def test_limits_must_be_sensible():
    assert ServeLimits(max_concurrency=3, queue_size=0).capacity == 3
    for bad in ({"max_pixels": 0}, {"timeout_s": -1.0}, {"max_concurrency": 0}, {"queue_size": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            replace(ServeLimits(), **bad)


def test_serve_command_explains_itself_and_refuses_a_non_run(tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(serve, ["--help"]).output
    for option in (
        "--run",
        "--host",
        "--port",
        "--device",
        "--max-upload-mb",
        "--max-pixels",
        "--timeout",
        "--workers",
        "--queue",
    ):
        assert option in help_text
    result = runner.invoke(serve, ["--run", str(tmp_path), "--device", "cpu"])
    assert isinstance(result.exception, PpadError) and "not a ppad run folder" in str(result.exception)
