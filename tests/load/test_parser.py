"""The incremental HTTP/1.1 response parser, fed whole and byte by byte."""

from __future__ import annotations

import pytest

from fastprof.load.parser import BODY_HEAD, ProtocolError, ResponseParser

PLAIN = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\nboom\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
)


def feed_all(raw: bytes, *, step: int | None = None, head_only: bool = False) -> ResponseParser:
    parser = ResponseParser()
    parser.reset(head_only=head_only)
    pieces = [raw] if step is None else [raw[i : i + step] for i in range(0, len(raw), step)]
    for i, piece in enumerate(pieces):
        done = parser.feed(piece)
        assert done == (i == len(pieces) - 1), f"done={done} at piece {i}/{len(pieces)}"
    return parser


@pytest.mark.parametrize("step", [None, 1, 2, 7])
def test_content_length(step: int | None) -> None:
    parser = feed_all(PLAIN, step=step)
    assert (parser.status, parser.keep_alive, parser.body_head) == (200, True, b"hello")


@pytest.mark.parametrize("step", [None, 1, 3, 5])
def test_chunked_with_extensions_and_trailers(step: int | None) -> None:
    parser = feed_all(CHUNKED, step=step)
    assert (parser.status, parser.body_head) == (500, b"boom0123456789")


def test_body_head_is_capped() -> None:
    body = b"x" * 1000
    parser = feed_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body, step=64)
    assert parser.body_head == body[:BODY_HEAD]


def test_connection_close_and_http10() -> None:
    parser = feed_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert not parser.keep_alive
    parser = feed_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not parser.keep_alive
    parser = feed_all(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
    assert parser.keep_alive


def test_body_until_close() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert not parser.feed(b" body")
    assert parser.feed_eof()
    assert (parser.body_head, parser.keep_alive) == (b"some body", False)


def test_eof_before_the_end_is_not_a_response() -> None:
    parser = ResponseParser()
    assert not parser.feed(PLAIN[:-2])
    assert parser.started
    assert not parser.feed_eof()


def test_no_body_statuses_and_head() -> None:
    assert feed_all(b"HTTP/1.1 204 No Content\r\n\r\n").status == 204
    assert feed_all(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").status == 304
    assert feed_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head_only=True).done


def test_informational_responses_are_skipped() -> None:
    parser = feed_all(b"HTTP/1.1 100 Continue\r\n\r\n" + PLAIN, step=4)
    assert parser.status == 200 and parser.body_head == b"hello"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "bad status"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "Content-Length"),
        (PLAIN + b"extra", "after the end"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", "CRLF"),
    ],
)
def test_malformed_responses(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        ResponseParser().feed(raw)


def test_oversized_head() -> None:
    parser = ResponseParser()
    with pytest.raises(ProtocolError, match="longer than"):
        parser.feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000)


def test_reset_between_responses() -> None:
    parser = ResponseParser()
    assert parser.feed(CHUNKED)
    parser.reset()
    assert not parser.done and not parser.started
    assert parser.feed(PLAIN) and parser.body_head == b"hello"
