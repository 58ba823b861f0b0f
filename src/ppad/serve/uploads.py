"""Receive one film from a multipart upload, in memory only, within the size limit.

The body is parsed while it streams in, so an upload over the limit is refused as soon as it
passes it, and nothing is ever spooled to a temporary file (Starlette's own form parser does
that above 1 MiB).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePath

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ppad.data.readers import DICOM_SUFFIXES
from ppad.serve.errors import ApiError

FIELD = "file"  # the multipart field that carries the film
FIELD_BYTES = 64 * 1024  # any other form field: a few KiB at most
MAX_NAME = 255
FORMATS = "PNG, JPEG or DICOM"


@dataclass(frozen=True)
class Upload:
    """One received film: its name (for messages only), ``png``/``jpeg``/``dicom`` and its bytes."""

    filename: str
    format: str
    data: bytes


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.field = self.value = b""
        self.name: str | None = None
        self.filename: str | None = None
        self.data = bytearray()


class _UploadParser:
    """Collects the ``file`` part of a multipart body fed chunk by chunk, enforcing the limit."""

    def __init__(self, boundary: bytes, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.files: list[_Part] = []
        self.part = _Part()
        self.done = False
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda data, start, end: self._append("field", data[start:end]),
                "on_header_value": lambda data, start, end: self._append("value", data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except MultipartParseError as error:
            raise ApiError(400, "bad_multipart", f"the multipart body cannot be parsed ({error})") from None

    def _begin(self) -> None:
        self.part = _Part()

    def _append(self, attribute: str, data: bytes) -> None:
        setattr(self.part, attribute, getattr(self.part, attribute) + data)

    def _header_end(self) -> None:
        self.part.headers[self.part.field.lower()] = self.part.value
        self.part.field = self.part.value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            name = PurePath(options[b"filename"].decode("utf-8", "replace").replace("\\", "/")).name
            self.part.filename = name[-MAX_NAME:]

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        part.data += data[start:end]
        if part.name == FIELD and len(part.data) > self.max_bytes:
            name = part.filename or FIELD
            raise ApiError(413, "upload_too_large", f"{name} is larger than {self.max_bytes:,} bytes", name)
        if part.name != FIELD and len(part.data) > FIELD_BYTES:
            raise ApiError(413, "upload_too_large", f"form field {part.name!r} is larger than {FIELD_BYTES:,} bytes")

    def _part_end(self) -> None:
        if self.part.name == FIELD:
            self.files.append(self.part)

    def _end(self) -> None:
        self.done = True


async def receive_upload(
    content_type: str, content_length: str | None, chunks: AsyncIterator[bytes], max_bytes: int
) -> Upload:
    """The film in the ``file`` field of a ``multipart/form-data`` body, or an :class:`ApiError`."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        sent = content_type or "no content type"
        raise ApiError(
            415, "unsupported_media_type", f"send the film as multipart/form-data field '{FIELD}', not {sent}"
        )
    body_limit = max_bytes + FIELD_BYTES  # the film plus multipart headers and small fields
    if content_length and content_length.isdigit() and int(content_length) > body_limit:
        raise ApiError(413, "upload_too_large", f"the request body ({int(content_length):,} bytes) is over the limit")
    parser = _UploadParser(options[b"boundary"], max_bytes)
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > body_limit:
            raise ApiError(413, "upload_too_large", f"the request body is larger than {body_limit:,} bytes")
        parser.feed(chunk)
    if not parser.done:
        raise ApiError(400, "bad_multipart", "the multipart body ended before its closing boundary")
    if len(parser.files) != 1:
        code = "too_many_files" if parser.files else "no_file"
        raise ApiError(400, code, f"send one film in the field '{FIELD}' ({len(parser.files)} found)")
    part = parser.files[0]
    name, data = part.filename or FIELD, bytes(part.data)
    declared = part.headers.get(b"content-type", b"").decode("latin-1")
    return Upload(name, image_format(data, name, declared), data)


def image_format(data: bytes, name: str, declared: str = "") -> str:
    """``png``, ``jpeg`` or ``dicom`` from the leading bytes; the declared type is not trusted."""
    if not data:
        raise ApiError(400, "empty_upload", f"{name} is empty (0 bytes)", name)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[128:132] == b"DICM" or PurePath(name).suffix.lower() in DICOM_SUFFIXES:
        return "dicom"
    sent = f" (sent as {declared})" if declared else ""
    raise ApiError(415, "unsupported_image_type", f"{name} is not a {FORMATS} file{sent}", name)
