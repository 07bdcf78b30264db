"""A minimal HTTP/1.1 keep-alive server on loopback, in its own process (so it runs on the other core).

It answers every request with ``200 ok`` and checks nothing: what is measured against it is the client's cost plus
a real socket round trip. Run as a script it prints its port and serves until its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # CancelledError too: at shutdown the open connections are simply dropped.
    quiet = (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError)
    with contextlib.suppress(*quiet):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE)
            await writer.drain()
    writer.close()


async def _serve() -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # the parent closes our stdin to stop us
    server.close()


@contextmanager
def child_process(script: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``script`` in a child process; yield it and the first line it prints; close its stdin to stop it.

    The child's stdin and stdout stay open as text pipes, for a script that takes commands while it serves.
    """
    process = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"{script.name} exited before it was ready")
        yield process, line
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def child_server(script: Path, *args: str) -> Iterator[str]:
    """Run ``script`` in a child process; yield the first line it prints; close its stdin to stop it."""
    with child_process(script, *args) as (_, line):
        yield line


@contextmanager
def loopback_server() -> Iterator[str]:
    """Start the server in a child process and yield its base URL."""
    with child_server(Path(__file__).resolve()) as port:
        yield f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    asyncio.run(_serve())
