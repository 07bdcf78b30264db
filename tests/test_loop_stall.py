"""The event-loop stall check that the async tests of every backend rely on."""

from __future__ import annotations

import asyncio
import gc
import time

from maskinporten_auth.testing import longest_stall


def test_a_blocking_call_on_the_loop_is_measured_as_a_stall():
    async def blocks() -> str:
        time.sleep(0.2)  # noqa: ASYNC251 - the blocking call the check must see
        return "done"

    result, stall = longest_stall(blocks)

    assert result == "done"
    assert stall >= 0.2


def test_awaiting_without_blocking_is_no_stall():
    async def awaits() -> None:
        await asyncio.sleep(0.2)

    _, stall = longest_stall(awaits)

    assert stall < 0.1


def test_the_garbage_collector_is_paused_only_while_measuring():
    seen: list[bool] = []

    async def looks() -> None:
        seen.append(gc.isenabled())

    assert gc.isenabled()
    longest_stall(looks)

    assert seen == [False]
    assert gc.isenabled()
