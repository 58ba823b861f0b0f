"""The HTTP service: ``POST /v1/score``, ``GET /v1/health``, ``GET /v1/model``, docs and the page."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ppad import __version__
from ppad.serve.admission import DeadlinePassed, QueueFull, Ticket, WorkQueue
from ppad.serve.errors import ApiError, install_handlers
from ppad.serve.limits import MAX_HEADER_BYTES, ServeLimits
from ppad.serve.model import ServedModel
from ppad.serve.schemas import ErrorBody, Health, ModelInfo, ScoreResult
from ppad.serve.uploads import FIELD, Upload, receive_upload

# The page loads nothing from elsewhere; the policy makes the browser enforce it.
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {FIELD: {"type": "string", "format": "binary", "description": "PNG, JPEG or DICOM"}},
                }
            }
        },
    }
}
ERRORS = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "Empty upload, no file, or a malformed multipart body",
        408: "The upload did not arrive in time",
        413: "Upload larger than the byte limit, or film over the pixel limit",
        415: "Not multipart/form-data, or not a PNG, JPEG or DICOM file",
        422: "The film cannot be decoded (truncated, corrupt, not an image), or a bad query parameter",
        431: f"The request's headers take more than {MAX_HEADER_BYTES:,} bytes",
        503: "Every running and waiting place is taken (see Retry-After)",
        504: "Not scored within the time limit",
    }.items()
}


def create_app(
    run_dir: str | Path,
    *,
    device: str = "auto",
    limits: ServeLimits = ServeLimits(),
    checkpoint: str = "best",
    backbone: str | None = None,
) -> FastAPI:
    """Load ``run_dir``'s model once (on ``device``) and build the service around it."""
    return build_app(ServedModel.load(run_dir, device, checkpoint, backbone), limits)


def build_app(served: ServedModel, limits: ServeLimits) -> FastAPI:
    """The service for an already loaded model."""
    queue = WorkQueue(limits.max_concurrency, limits.capacity)
    started = time.monotonic()
    page = files("ppad.serve").joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        queue.shutdown()

    app = FastAPIOffline(
        title="ppad",
        version=__version__,
        summary="Anomaly scores for chest X-rays from a trained ppad run.",
        lifespan=lifespan,
    )
    app.state.served, app.state.queue, app.state.limits = served, queue, limits
    install_handlers(app)
    app.add_middleware(HeaderLimit)

    @app.post("/v1/score", response_model=ScoreResult, responses=ERRORS, openapi_extra=UPLOAD_BODY)
    async def score(
        request: Request,
        with_map: bool = Query(True, alias="map", description="Return the anomaly map overlay (costs time)."),
    ) -> dict:
        """Score one film sent as multipart field `file`: the score, each view, the decision and the map."""
        arrived = time.perf_counter()
        try:
            async with queue.ticket(limits.timeout_s) as ticket:
                upload = await _receive(request, ticket, limits)
                try:
                    result = await queue.run(ticket, lambda: served.score(upload, limits.max_pixels, with_map))
                except DeadlinePassed:
                    detail = f"{upload.filename} was not scored within {limits.timeout_s:g} s"
                    raise ApiError(504, "timeout", detail, upload.filename) from None
        except QueueFull:
            detail = f"all {limits.capacity} places are taken; retry in {limits.retry_after_s} s"
            raise ApiError(503, "busy", detail, headers={"Retry-After": str(limits.retry_after_s)}) from None
        return {**result, "elapsed_ms": (time.perf_counter() - arrived) * 1000}

    @app.get("/v1/health", response_model=Health)
    async def health() -> dict:
        """Liveness and load: the model is loaded whenever the server answers."""
        uptime = time.monotonic() - started
        return {
            "status": "ok",
            "device": str(served.device),
            "admitted": queue.admitted,
            "capacity": queue.capacity,
            "uptime_s": uptime,
        }

    @app.get("/v1/model", response_model=ModelInfo)
    async def model() -> dict:
        """The run served: method, backbone fingerprint, views, threshold, config and limits."""
        return {**served.describe(), "limits": limits.to_dict(), "ppad_version": __version__}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    return app


class HeaderLimit:
    """Answers a request whose headers take more than :data:`MAX_HEADER_BYTES` with a JSON 431, before
    any route runs (the server buffers up to ``HTTP_PARSER_BYTES`` of them so that this answer is ppad's)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope["headers"])
            if size > MAX_HEADER_BYTES:
                detail = f"the request's headers take {size:,} bytes, more than {MAX_HEADER_BYTES:,}"
                await ApiError(431, "headers_too_large", detail).response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _receive(request: Request, ticket: Ticket, limits: ServeLimits) -> Upload:
    headers = request.headers
    try:
        async with asyncio.timeout(ticket.remaining()):
            return await receive_upload(
                headers.get("content-type", ""),
                headers.get("content-length"),
                request.stream(),
                limits.max_upload_bytes,
            )
    except TimeoutError:
        raise ApiError(408, "upload_timeout", f"the upload did not arrive within {limits.timeout_s:g} s") from None
    except ClientDisconnect:
        raise ApiError(400, "incomplete_upload", "the client closed the connection during the upload") from None
