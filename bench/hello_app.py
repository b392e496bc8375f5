"""The servers that ``bench/loadclient.py`` loads.

``app``: the FastAPI hello world, served by uvicorn (``python -m uvicorn bench.hello_app:app``);
``/`` answers at once, ``/sleep5`` after an ``asyncio.sleep`` of 5 ms (a route whose latency
is not made of CPU work, so no queue forms in the server at a modest concurrency).

``python -m bench.hello_app PORT``: a canned-answer HTTP/1.1 server on uvloop that does no ASGI
work at all, so that a client's own ceiling shows (``bench/loadclient.py --ceiling``). It
answers every request head (GET, no body) with the same 200 response, keep-alive.
"""

from __future__ import annotations

import asyncio
import sys

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


@app.get("/sleep5")
async def sleep5() -> dict[str, str]:
    await asyncio.sleep(0.005)
    return {"message": "hello"}


_BODY = b'{"message":"hello"}'
_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)


class _Canned(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        data = self.pending + data
        complete = data.count(b"\r\n\r\n")
        self.pending = data[data.rfind(b"\r\n\r\n") + 4 :] if complete else data
        if complete and self.transport is not None:
            self.transport.write(_RESPONSE * complete)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Canned, "127.0.0.1", port)
    print(f"canned server on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(_serve(int(sys.argv[1])))
