"""Run the service with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from ppad.serve.limits import HTTP_PARSER_BYTES, ServeLimits

logger = logging.getLogger(__name__)

SPARE_CONNECTIONS = 32  # beyond the score capacity, for health checks, the page and docs


def run_server(
    run_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    limits: ServeLimits = ServeLimits(),
    checkpoint: str = "best",
    backbone: str | None = None,
) -> None:
    """Load the run's model, then serve it on ``host:port`` until interrupted."""
    import uvicorn

    from ppad.serve.app import create_app

    app = create_app(run_dir, device=device, limits=limits, checkpoint=checkpoint, backbone=backbone)
    model = app.state.served.describe()
    logger.info(
        "serving %s (%s, backbone %s…) on %s at http://%s:%d/ (API docs: /docs)",
        run_dir,
        model["method"],
        model["backbone"]["fingerprint"][:12],
        model["device"],
        host,
        port,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        limit_concurrency=limits.capacity + SPARE_CONNECTIONS,
        timeout_keep_alive=5,
        http="h11",  # the parser whose buffer HTTP_PARSER_BYTES sets (httptools, if installed, has its own)
        h11_max_incomplete_event_size=HTTP_PARSER_BYTES,
    )
