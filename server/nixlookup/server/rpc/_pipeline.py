"""A stream's requests answered a few at a time and written back in order: the bulk path's pipeline.

Why: a CheckStream batch is numpy work handed to a thread; done strictly one after another (read, hand
over, wait, write, read ...) each batch also pays the two thread hand-offs and the write's round trip
through the transport, ~10-20% of a 10k-number batch. `answer_in_order` keeps up to `depth` requests being
answered while the next one is read and the finished one written, so those waits overlap the work.

Invariants:
- results are written in request order, each exactly once, and a request is read only while fewer than
  `depth` are being answered: a stream holds at most `depth` requests and their results in the server,
  whatever the client does (HTTP/2 flow control holds the rest back on the client);
- a finished result is written without waiting for the next request, so a client that sends one batch
  and waits for its answer before sending the next is served at once;
- the first failure (a read that timed out, a bad request, a write that timed out) ends the pipeline:
  results of the requests before it are written first, the rest are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["answer_in_order"]

_Request = TypeVar("_Request")
_Result = TypeVar("_Result")


async def answer_in_order(
    next_request: Callable[[], Awaitable[_Request | None]],
    answer: Callable[[_Request], Awaitable[_Result]],
    write: Callable[[_Result], Awaitable[None]],
    *,
    depth: int,
) -> None:
    """Read requests until `next_request` gives None, answer up to `depth` at once, write in order."""
    answering: deque[asyncio.Future[_Result]] = deque()
    reading: asyncio.Future[_Request | None] | None = None
    all_read = False
    try:
        while True:
            if reading is None and not all_read and len(answering) < depth:
                reading = asyncio.ensure_future(next_request())
            waiting = [task for task in (reading, answering[0] if answering else None) if task is not None]
            if not waiting:
                return
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if answering and answering[0].done():
                await write(answering.popleft().result())
            if reading is not None and reading.done():
                request, reading = reading.result(), None
                if request is None:
                    all_read = True
                else:
                    answering.append(asyncio.ensure_future(answer(request)))
    finally:
        for task in (reading, *answering):
            if task is None:
                continue
            task.cancel()
            if task.done() and not task.cancelled():
                with contextlib.suppress(BaseException):
                    task.exception()  # retrieved: no "exception was never retrieved" warning
