"""An incremental parser of HTTP/1.1 responses, for the load client's one-request-at-a-time use.

Handwritten rather than h11 (which uvicorn depends on) or httptools (a dev dependency, not one
of the ``scan`` extra): the client needs only the status, the framing (``Content-Length``,
``Transfer-Encoding: chunked``, or read-until-close), ``Connection`` and the first bytes of the
body for error samples. For a small uvicorn response this parser costs 2-4 µs, h11 37-59 µs
(with the request it must also be sent through its state machine), httptools 0.5 µs
(``python -m bench.loadclient --parser-only``; ranges are quiet vs busy machine). httptools
would save about a tenth of the client's CPU per request, most of which goes to the event loop
and the socket calls, but knows nothing of HEAD requests and has no end-of-stream call for
bodies framed by the connection's end. Informational responses (1xx other than 101) are
skipped; bodies are not kept beyond :data:`BODY_HEAD` bytes.

Feed it with :meth:`ResponseParser.feed` until that returns True; then read ``status``,
``keep_alive`` and ``body_head``, and call :meth:`ResponseParser.reset` before the next
response. A response framed by the end of the connection completes with
:meth:`ResponseParser.feed_eof`. Anything malformed raises :class:`ProtocolError`.
"""

from __future__ import annotations

#: How much of a body is kept, for error samples.
BODY_HEAD = 200
#: A status line plus headers longer than this is refused.
MAX_HEAD = 64 * 1024

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class ProtocolError(Exception):
    """The server sent something that is not a valid HTTP/1.1 response."""


class ResponseParser:
    __slots__ = (
        "_buf",
        "_remaining",
        "_state",
        "body_head",
        "head_only",
        "keep_alive",
        "status",
    )

    def __init__(self) -> None:
        self.head_only = False
        self.reset()

    def reset(self, *, head_only: bool = False) -> None:
        """Get ready for the next response; ``head_only`` when it answers a HEAD request."""
        self._state = _HEAD
        self._buf = b""
        self._remaining = 0
        self.status = 0
        self.keep_alive = True
        self.body_head = b""
        self.head_only = head_only

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def started(self) -> bool:
        """Whether any byte of this response has arrived."""
        return self._state != _HEAD or bool(self._buf)

    def feed(self, data: bytes) -> bool:
        """Consume ``data``; True once the response is complete (no bytes may follow it)."""
        state = self._state
        if state == _HEAD:
            buf = self._buf + data if self._buf else data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
                self._buf = buf
                return False
            self._buf = b""
            state = self._parse_head(buf[:end])
            data = buf[end + 4 :]
            if state == _HEAD:  # an informational response: the real one follows
                return self.feed(data) if data else False
        if state == _BODY:
            n = len(data)
            if len(self.body_head) < BODY_HEAD:
                self.body_head += data[: BODY_HEAD - len(self.body_head)]
            if n < self._remaining:
                self._remaining -= n
                self._state = _BODY
                return False
            if n > self._remaining:
                raise ProtocolError(f"{n - self._remaining} bytes after the end of the response")
            self._state = _DONE
            return True
        if state == _UNTIL_CLOSE:
            if len(self.body_head) < BODY_HEAD:
                self.body_head += data[: BODY_HEAD - len(self.body_head)]
            self._state = _UNTIL_CLOSE
            return False
        if state == _DONE:
            if data:
                raise ProtocolError(f"{len(data)} bytes after the end of the response")
            self._state = _DONE
            return True
        self._state = state
        return self._feed_chunked(data)

    def feed_eof(self) -> bool:
        """The connection closed: True if that completes the response."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
        return self._state == _DONE

    def _parse_head(self, head: bytes) -> int:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        try:
            status = int(status_line[9:12])
        except ValueError:
            raise ProtocolError(f"bad status line: {status_line[:80]!r}") from None
        http10 = status_line[7:8] == b"0"
        content_length: int | None = None
        chunked = False
        connection = b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise ProtocolError(f"bad header line: {line[:80]!r}")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise ProtocolError(f"bad Content-Length: {value[:40]!r}") from None
                if length < 0 or (content_length is not None and length != content_length):
                    raise ProtocolError(f"bad Content-Length: {value[:40]!r}")
                content_length = length
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif name == b"connection":
                connection = value.strip().lower()
        if 100 <= status < 200 and status != 101:
            return _HEAD
        self.status = status
        if http10:
            self.keep_alive = b"keep-alive" in connection
        else:
            self.keep_alive = b"close" not in connection
        if self.head_only or status in (204, 304) or 100 <= status < 200:
            self._state = _DONE
        elif chunked:
            self._state = _CHUNK_SIZE
        elif content_length is not None:
            self._remaining = content_length
            self._state = _BODY if content_length else _DONE
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE
        return self._state

    def _feed_chunked(self, data: bytes) -> bool:
        buf = self._buf + data if self._buf else data
        pos = 0
        state = self._state
        while True:
            if state == _CHUNK_DATA:
                take = min(self._remaining, len(buf) - pos)
                if take and len(self.body_head) < BODY_HEAD:
                    self.body_head += buf[pos : pos + min(take, BODY_HEAD - len(self.body_head))]
                pos += take
                self._remaining -= take
                if self._remaining:
                    break
                state = _CHUNK_CRLF
            if state == _CHUNK_CRLF:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                pos += 2
                state = _CHUNK_SIZE
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > MAX_HEAD:
                    raise ProtocolError("chunk size line or trailer too long")
                break
            line = buf[pos:end]
            pos = end + 2
            if state == _CHUNK_SIZE:
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line: {line[:40]!r}") from None
                if size < 0:
                    raise ProtocolError(f"bad chunk size line: {line[:40]!r}")
                if size:
                    self._remaining = size
                    state = _CHUNK_DATA
                else:
                    state = _TRAILER
            elif not line:  # _TRAILER: an empty line ends the message
                if pos != len(buf):
                    raise ProtocolError(f"{len(buf) - pos} bytes after the end of the response")
                self._buf = b""
                self._state = _DONE
                return True
        self._buf = buf[pos:]
        self._state = state
        return False
