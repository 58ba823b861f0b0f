"""A small, bounded load test of a live ``ppad serve`` on loopback: 200 requests, 8 at a time."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ppad.data import discover

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'ppad[serve]'")
import httpx  # noqa: E402

from ppad.serve.model import ServedModel  # noqa: E402
from tests.test_serve import expected_score, live_server, train_tiny_run  # noqa: E402

REQUESTS, CONCURRENT = 200, 8


def test_200_requests_8_at_a_time_are_all_answered_right(tmp_path, demo_data, capsys):
    run_dir = train_tiny_run(tmp_path / "run", demo_data)
    films = [item.path for item in discover(demo_data).test[::5]]
    served = ServedModel.load(run_dir, device="cpu")
    expected = {path.name: expected_score(served, path)[0] for path in films}
    assert len(set(expected.values())) == len(films)  # a mixed-up answer would show
    uploads = [(path.name, path.read_bytes()) for path in films]

    with live_server(run_dir, tmp_path / "serve.log", "--workers", "2", "--queue", str(CONCURRENT)) as url:
        with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=CONCURRENT)) as client:

            def one(i: int) -> tuple[float, str, int, dict]:
                name, data = uploads[i % len(uploads)]
                started = time.perf_counter()
                response = client.post("/v1/score", params={"map": "false"}, files={"file": (name, data)})
                return time.perf_counter() - started, name, response.status_code, response.json()

            started = time.perf_counter()
            with ThreadPoolExecutor(CONCURRENT) as pool:
                results = list(pool.map(one, range(REQUESTS)))
            elapsed = time.perf_counter() - started

    assert len(results) == REQUESTS
    for _, name, status, body in results:
        assert status == 200, body
        assert body["filename"] == name and body["score"] == pytest.approx(expected[name], abs=1e-6)
    latency_ms = np.array([seconds for seconds, *_ in results]) * 1000
    p50, p95 = np.percentile(latency_ms, [50, 95])
    with capsys.disabled():
        print(
            f"\nserve load: {REQUESTS} requests, {CONCURRENT} concurrent, tiny backbone: "
            f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, {REQUESTS / elapsed:.0f} requests/s"
        )
    assert p95 < 30_000
