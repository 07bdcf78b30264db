"""The provider's flights: a fetch's waiters, sync and async, and their patience."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

from maskinporten_auth.cache import CachedToken
from maskinporten_auth.provider import Flight

TOKEN = CachedToken("token", expires_at=100.0, refresh_at=50.0, must_refresh_at=90.0)


def finish_soon(flight: Flight, after: float = 0.05) -> threading.Timer:
    timer = threading.Timer(after, flight.finish, kwargs={"token": TOKEN})
    timer.start()
    return timer


def test_a_thread_waits_for_the_fetch_to_end():
    flight = Flight()
    flight.start()
    finish_soon(flight)
    assert flight.wait(patience=30)
    assert flight.token is TOKEN


def test_an_async_waiter_is_woken_from_another_thread():
    flight = Flight()
    flight.start()

    async def wait() -> bool:
        finish_soon(flight)
        return await flight.wait_async(patience=30)

    assert asyncio.run(wait())
    assert flight.token is TOKEN


def test_waiters_give_up_on_a_fetch_that_runs_past_their_patience():
    flight = Flight()
    flight.start()
    assert not flight.wait(patience=0.05)
    assert not asyncio.run(flight.wait_async(patience=0.05))


def test_a_queued_fetch_does_not_use_up_the_waiters_patience():
    """Patience counts from the fetch's start: a waiter looks again after it and keeps waiting while queued."""
    flight = Flight()

    def start_then_finish() -> None:
        flight.start()
        flight.finish(token=TOKEN)

    async def wait() -> bool:
        threading.Timer(0.15, start_then_finish).start()  # queued for three patiences
        return await flight.wait_async(patience=0.05)

    assert asyncio.run(wait())
    flight = Flight()
    threading.Timer(0.15, start_then_finish).start()
    assert flight.wait(patience=0.05)


def test_a_cancelled_async_waiter_leaves_the_flight_to_wake_the_others():
    flight = Flight()
    flight.start()

    async def wait() -> bool:
        cancelled = asyncio.ensure_future(flight.wait_async(patience=30))
        other = asyncio.ensure_future(flight.wait_async(patience=30))
        await asyncio.sleep(0)
        cancelled.cancel()
        finish_soon(flight)
        return await other

    assert asyncio.run(wait())


def test_a_thousand_async_waiters_are_all_woken_and_keep_no_event_loop_alive():
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def wait(flight: Flight) -> list[bool]:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        waiters = [asyncio.ensure_future(flight.wait_async(patience=30)) for _ in range(1000)]
        await asyncio.sleep(0)
        finish_soon(flight, after=0.01)
        return await asyncio.gather(*waiters)

    flight = Flight()
    flight.start()
    assert all(asyncio.run(wait(flight)))
    del flight  # as the provider drops a flight once it has ended
    gc.collect()
    assert loops[0]() is None
