"""The limits a hospital network needs: upload and image size, time, and work taken on at once."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ppad.errors import SettingsError

MIB = 2**20
MAX_HEADER_BYTES = 64 * 1024  # a request's header names and values together; beyond, the app answers a JSON 431
HTTP_PARSER_BYTES = MIB  # what the HTTP server buffers of a request head; beyond, it answers a plain-text 400


@dataclass(frozen=True)
class ServeLimits:
    """What one ``ppad serve`` process accepts.

    ``max_concurrency`` uploads are decoded and scored at once (the model itself runs one at a
    time), ``queue_size`` more wait; beyond that a request is answered 503 at once. A request
    still unanswered ``timeout_s`` after it arrived is answered 408 (upload too slow) or 504.
    """

    max_upload_bytes: int = 64 * MIB  # an uncompressed 16-bit 4300×4300 DICOM is about 36 MiB
    max_pixels: int = 36_000_000  # 6000×6000; a decoded film takes 4 bytes a pixel in memory
    timeout_s: float = 30.0
    max_concurrency: int = 2
    queue_size: int = 8
    retry_after_s: int = 2  # the Retry-After header sent with 503

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "timeout_s", "max_concurrency", "retry_after_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive, got {getattr(self, name)}")
        if self.queue_size < 0:
            raise SettingsError(f"queue_size must be 0 or more, got {self.queue_size}")

    @property
    def capacity(self) -> int:
        """Requests admitted at once: running plus waiting."""
        return self.max_concurrency + self.queue_size

    def to_dict(self) -> dict:
        return asdict(self)
