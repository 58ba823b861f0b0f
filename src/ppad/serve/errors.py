"""Every error the API answers is JSON: ``{"error": code, "detail": message, "filename": name}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ppad.data.readers import ImageReadError, ImageTooLargeError

HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class ApiError(Exception):
    """A request the service refuses, with the status, a stable code and a message for people."""

    def __init__(
        self, status: int, error: str, detail: str, filename: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.filename, self.headers = status, error, detail, filename, headers

    def response(self) -> JSONResponse:
        body = {"error": self.error, "detail": self.detail, "filename": self.filename}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def from_read_error(error: ImageReadError, filename: str) -> ApiError:
    """An upload the image readers refused: too many pixels (413) or not decodable (422)."""
    if isinstance(error, ImageTooLargeError):
        return ApiError(413, "image_too_large", f"{filename} {error.problem}", filename)
    return ApiError(422, "undecodable_image", f"{filename} {error.problem}", filename)


def install_handlers(app: FastAPI) -> None:
    """Answer API errors, framework errors and bugs alike in the JSON error shape."""

    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error.response()

    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
        return ApiError(error.status_code, code, str(error.detail), headers=error.headers).response()

    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return ApiError(422, "invalid_request", problems).response()

    async def bug(_: Request, error: Exception) -> JSONResponse:
        detail = f"unexpected {type(error).__name__} while answering; the server log has the traceback"
        return ApiError(500, "internal_error", detail).response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, bug)
