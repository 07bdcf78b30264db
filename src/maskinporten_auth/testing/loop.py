"""Checks that async code never blocks its event loop, and remote signers slowed down to make a block visible."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..signer import DigestSigner

__all__ = ["longest_stall", "with_added_latency"]

_T = TypeVar("_T")
_S = TypeVar("_S", bound=DigestSigner)


def longest_stall(work: Callable[[], Awaitable[_T]], *, interval: float = 0.005) -> tuple[_T, float]:
    """Run ``await work()`` in a new event loop beside a ticker; return its result and the longest tick gap.

    The ticker sleeps ``interval`` seconds at a time: a gap much longer than that means something blocked the
    loop (a synchronous network call, a signature computed on the loop's thread).

    The cyclic garbage collector is paused while it runs: a full collection in a large process (a whole test
    suite's) stops every thread for hundreds of milliseconds, whatever the code under test does.
    """

    async def main() -> tuple[_T, float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(interval)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(4 * interval)
        try:
            result = await work()
        finally:
            done.set()
            await ticker
        return result, max(gaps)

    collecting = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(main())
    finally:
        if collecting:
            gc.enable()


def with_added_latency(signer: _S, seconds: float) -> _S:
    """Make every call ``signer`` makes to its key service take ``seconds`` longer, as a distant service would.

    The calls still reach the real service; only a blocking sleep is added in front of each (looking up the
    public key, checking the key, signing).
    """
    for name in ("_fetch_public_key", "_check_key", "_sign_digest"):
        call = getattr(signer, name)

        @functools.wraps(call)
        def slowed(*args: Any, _call: Callable[..., Any] = call, **kwargs: Any) -> Any:
            time.sleep(seconds)
            return _call(*args, **kwargs)

        setattr(signer, name, slowed)
    return signer
