"""Latency and throughput of the HTTP service: p50/p95 and requests/s under concurrent uploads.

Run: python benchmarks/serve_load.py [--run RUN] [--films DIR] [--requests 200] [--concurrency 8] [--map]

Without --run it trains a one-epoch PPAD run on the shipped cxr-lite backbone (generated films) into
a temporary folder. The server runs in this process (uvicorn in a thread, on 127.0.0.1), with the
default limits; the clients are threads posting the films of --films (default: 16 ZhangLab test
films from ../shared/data, else generated ones) in turn.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from ppad.data import list_images, write_demo_dataset
from ppad.serve import ServeLimits
from ppad.serve.app import create_app
from ppad.training import TrainSettings, train_run

ZHANGLAB_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "zhanglab" / "test" / "normal"


def default_run(folder: Path) -> Path:
    data = write_demo_dataset(folder / "data", n_train=16, n_test_normal=8, n_test_abnormal=8, seed=0)
    settings = TrainSettings(shots=8, epochs=1, validation_size=8, seed=0)
    train_run(data, folder / "run", "cxr-lite", settings=settings, device="cpu", progress=False)
    return folder / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--films", type=Path, default=ZHANGLAB_TEST if ZHANGLAB_TEST.is_dir() else None)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--map", action="store_true", help="Ask for the anomaly map overlay too.")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="ppad-serve-bench-"))
    run_dir = args.run or default_run(scratch)
    films = list_images(args.films or write_demo_dataset(scratch / "films", n_train=4, seed=1) / "test")[:16]
    uploads = [(path.name, path.read_bytes()) for path in films]
    limits = ServeLimits(queue_size=max(ServeLimits().queue_size, args.concurrency))

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(run_dir, device=args.device, limits=limits)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=args.concurrency)) as client:

        def one(i: int) -> tuple[float, int]:
            name, data = uploads[i % len(uploads)]
            started = time.perf_counter()
            response = client.post("/v1/score", params={"map": str(args.map).lower()}, files={"file": (name, data)})
            return time.perf_counter() - started, response.status_code

        one(0)  # warm the connection pool
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - started
        model = client.get("/v1/model").json()
    server.should_exit = True
    thread.join()

    latency = np.array([seconds for seconds, _ in results]) * 1000
    statuses = {status: sum(1 for _, s in results if s == status) for status in {s for _, s in results}}
    p50, p95 = np.percentile(latency, [50, 95])
    print(f"run {run_dir} ({model['method']} on {model['backbone']['architecture']}, {model['device']})")
    print(f"films: {len(uploads)} from {args.films or 'generated'}; map: {args.map}")
    print(f"{args.requests} requests, {args.concurrency} concurrent: statuses {statuses}")
    print(f"latency p50 {p50:.0f} ms, p95 {p95:.0f} ms; {args.requests / elapsed:.1f} requests/s")


if __name__ == "__main__":
    main()
