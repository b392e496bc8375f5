"""One keep-alive HTTP/1.1 client connection as an asyncio Protocol, one request at a time.

:meth:`Connection.send` writes a request and returns a future that completes when the whole
response has been parsed (fastprof/load/parser.py), or fails with :class:`ConnectionClosed`,
:class:`ProtocolError`, or whatever :meth:`Connection.timed_out` is given.

A Protocol rather than asyncio streams: bytes go straight from ``data_received`` into the
parser, and the connection knows at once when the server closes it, even while idle. Speed is
not the reason - a bare closed loop on streams measured the same within noise
(``python -m bench.loadclient --streams``).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import cast

from fastprof.load.parser import ProtocolError, ResponseParser


class ConnectionClosed(Exception):
    """The server closed the connection before the response was complete."""


class Connection(asyncio.Protocol):
    __slots__ = ("closed", "deadline", "idle_since", "loop", "parser", "transport", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.deadline = math.inf
        self.idle_since = time.perf_counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, data: bytes, head_only: bool, deadline: float) -> asyncio.Future[None]:
        assert self.transport is not None
        self.parser.reset(head_only=head_only)
        waiter = self.waiter = self.loop.create_future()
        self.deadline = deadline
        self.transport.write(data)
        return waiter

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None:  # nothing asked: a confused server
            self.close()
            return
        try:
            complete = self.parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        if complete:
            self.waiter = None
            self.deadline = math.inf
            self.idle_since = time.perf_counter()
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None:
            return
        self.waiter = None
        if waiter.done():
            return
        if self.parser.feed_eof():
            waiter.set_result(None)
        else:
            waiter.set_exception(ConnectionClosed(str(exc) if exc else ""))

    def timed_out(self, exc: BaseException) -> None:
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        waiter = self.waiter
        self.waiter = None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
