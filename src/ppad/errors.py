"""User errors: problems with a file, an option, a device or a run folder that the user can fix.

The command line prints any :class:`PpadError` as one line and exits 2; every other exception
is a bug in ppad and keeps its traceback. Each subclass is also a ``ValueError`` (or
``KeyError``) so library callers can catch them the usual way.
"""

from __future__ import annotations

from pathlib import Path


class PpadError(Exception):
    """Base of every error whose message alone tells the user what to fix."""


class FileProblem(PpadError, ValueError):
    """A problem with one file; ``str()`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class SettingsError(PpadError, ValueError):
    """An option or setting out of range, or a combination that cannot work."""


class DataError(PpadError, ValueError):
    """A data set that cannot serve the request (too few images, one class only, …)."""


class DeviceError(PpadError, ValueError):
    """A ``--device`` that does not exist on this machine."""


class UnknownNameError(PpadError, KeyError):
    """A name (method, synthesis, architecture, region set) that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
