"""``ppad serve``: a trained run behind an HTTP API and a drop-a-film page.

:func:`ppad.serve.app.create_app` builds the FastAPI app (model loaded once), and
:func:`ppad.serve.server.run_server` runs it with uvicorn; :class:`ServeLimits` holds the limits.
"""

from ppad.serve.limits import ServeLimits

__all__ = ["ServeLimits"]
