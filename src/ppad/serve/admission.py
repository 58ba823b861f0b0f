"""Bounded work: a few jobs run in threads, a few more wait, the rest are refused at once.

A request takes a ticket before its upload is read. The ticket is given back when its job's
thread finishes — not when a timed-out request stops waiting for it — so work abandoned by a
timeout still counts against the capacity until it is really over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """Every running and waiting place is taken."""


class DeadlinePassed(Exception):
    """The request's time ran out (before or while its job ran)."""


class Ticket:
    """One admitted request: its deadline and, once submitted, its job."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.job: asyncio.Future | None = None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


class WorkQueue:
    """``workers`` threads run jobs; at most ``capacity`` requests are admitted at once."""

    def __init__(self, workers: int, capacity: int) -> None:
        self.capacity = capacity
        self.admitted = 0
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ppad-serve")

    @asynccontextmanager
    async def ticket(self, timeout_s: float) -> AsyncIterator[Ticket]:
        """Admit one request for ``timeout_s`` seconds, or raise :class:`QueueFull`."""
        if self.admitted >= self.capacity:
            raise QueueFull
        self.admitted += 1
        ticket = Ticket(time.monotonic() + timeout_s)
        try:
            yield ticket
        finally:
            if ticket.job is None or ticket.job.done():
                self.admitted -= 1
            else:
                ticket.job.add_done_callback(self._release)

    async def run(self, ticket: Ticket, job: Callable[[], T]) -> T:
        """Run ``job`` in a worker thread within the ticket's deadline (:class:`DeadlinePassed`)."""
        ticket.job = asyncio.get_running_loop().run_in_executor(self._pool, self._guarded, ticket, job)
        try:
            return await asyncio.wait_for(asyncio.shield(ticket.job), ticket.remaining())
        except TimeoutError:
            raise DeadlinePassed from None

    def _guarded(self, ticket: Ticket, job: Callable[[], T]) -> T:
        if ticket.remaining() <= 0:  # waited too long in the queue: nobody wants the answer
            raise DeadlinePassed
        return job()

    def _release(self, job: asyncio.Future) -> None:
        self.admitted -= 1
        if not job.cancelled():
            job.exception()  # retrieved, so asyncio does not log an abandoned job's error

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
