"""The provider's single-flight machinery: a fetch's waiters, sync and async, and their patience."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref

from maskinporten_auth import singleflight
from maskinporten_auth.cache import CachedToken
from maskinporten_auth.singleflight import Flight

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


def test_a_thousand_async_waiters_share_a_timer_and_keep_no_event_loop_alive():
    flight = Flight()
    flight.start()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def wait() -> list[bool]:
        loop = asyncio.get_running_loop()
        loops.append(weakref.ref(loop))
        waiters = [asyncio.ensure_future(flight.wait_async(patience=30)) for _ in range(1000)]
        await asyncio.sleep(0)
        timers = [handle for handle in loop._scheduled if not handle.cancelled()]  # type: ignore[attr-defined]
        assert len(timers) <= 2  # one per tick of the waiters' deadlines, not one per waiter
        finish_soon(flight, after=0.01)
        return await asyncio.gather(*waiters)

    assert all(asyncio.run(wait()))
    gc.collect()
    assert loops[0]() is None


def test_a_lone_async_waiter_is_woken_at_once_not_at_the_next_look(monkeypatch):
    monkeypatch.setattr(singleflight, "_POLL", 30.0)
    flights = [Flight() for _ in range(2)]

    async def wait() -> float:
        first = asyncio.ensure_future(flights[0].wait_async(patience=60))
        await asyncio.sleep(0)
        flights[0].finish(token=TOKEN)
        assert await first
        started = time.monotonic()
        second = asyncio.ensure_future(flights[1].wait_async(patience=60))
        await asyncio.sleep(0)
        finish_soon(flights[1], after=0.01)
        assert await asyncio.wait_for(second, 10)
        return time.monotonic() - started

    assert asyncio.run(wait()) < 5


def test_a_burst_of_fetches_ending_wakes_the_loop_a_few_times_not_once_each(monkeypatch):
    monkeypatch.setattr(singleflight, "_POLL", 0.05)
    flights = [Flight() for _ in range(200)]
    for flight in flights:
        flight.start()

    def finish_one_by_one() -> None:
        for flight in flights:
            flight.finish(token=TOKEN)
            time.sleep(0.001)

    async def wait() -> int:
        loop = asyncio.get_running_loop()
        wakes = 0
        original = loop.call_soon_threadsafe

        def counting(*args: object) -> object:
            nonlocal wakes
            wakes += 1
            return original(*args)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        waiters = [asyncio.ensure_future(flight.wait_async(patience=60)) for flight in flights]
        await asyncio.sleep(0)
        threading.Thread(target=finish_one_by_one).start()
        assert all(await asyncio.gather(*waiters))
        await asyncio.sleep(0.2)  # the look after the last finds nothing and stops looking
        mailbox = singleflight._mailbox(loop)
        assert mailbox.waiting == 0 and not mailbox._polling
        return wakes

    assert asyncio.run(wait()) <= 20  # 200 fetches ended over about 0.3 s; looks every 0.05 s collected them
