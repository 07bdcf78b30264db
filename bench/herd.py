"""Cold-start herd: many callers at once on an empty token cache must make one grant between them.

300 asyncio tasks (one ``httpx.AsyncClient``, 16 connections) and 32 threads (one ``httpx.Client``, started
together by a barrier) each send one request to a loopback keep-alive server. Each herd runs cold (a new
MaskinportenAuth, empty cache) and warm (its token already cached), alternately; the ratio is cold over warm
time to the last response, medians over the repetitions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
from benchkit import Results, Row, Setup, median
from loopback import loopback_server

from maskinporten_auth import MaskinportenAuth

SECTION = "herd"
CHART = "Cold start and imports (ratio to the same run's baseline)"
TASKS = 300
THREADS = 32


def async_herd(auth: MaskinportenAuth, url: str) -> tuple[float, list[int]]:
    async def herd() -> tuple[float, list[int]]:
        # httpx's async pool slows down sharply with many connections open at once (2-core machine): use 16.
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        async with httpx.AsyncClient(auth=auth, limits=limits, timeout=60) as client:
            started = time.perf_counter()
            responses = await asyncio.gather(*(client.get(f"{url}/r/{n}") for n in range(TASKS)))
            return time.perf_counter() - started, [r.status_code for r in responses]

    return asyncio.run(herd())


def thread_herd(auth: MaskinportenAuth, url: str) -> tuple[float, list[int]]:
    barrier = threading.Barrier(THREADS + 1)
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    with httpx.Client(auth=auth, limits=limits, timeout=60) as client:

        def worker(n: int) -> None:
            barrier.wait()
            statuses.append(client.get(f"{url}/t/{n}").status_code)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join(timeout=60)
        return time.perf_counter() - started, statuses


def run(setup: Setup, results: Results, *, quick: bool = False) -> None:
    repetitions = 2 if quick else 5
    emulator = setup.emulator
    with loopback_server() as api_url:
        herds: list[tuple[str, int, Callable[[MaskinportenAuth, str], tuple[float, list[int]]]]] = [
            ("asyncio tasks", TASKS, async_herd),
            ("threads", THREADS, thread_herd),
        ]
        for label, callers, herd in herds:
            cold: list[float] = []
            warm: list[float] = []
            grants: list[int] = []
            for _ in range(repetitions):
                auth = setup.auth()
                before = len(emulator.grants)
                elapsed, statuses = herd(auth, api_url)
                grants.append(len(emulator.grants) - before)
                _check(statuses, callers, f"cold {label}")
                cold.append(elapsed)
                before = len(emulator.grants)
                elapsed, statuses = herd(auth, api_url)
                _check(statuses, callers, f"warm {label}")
                if len(emulator.grants) != before:
                    raise RuntimeError(f"a warm {label} herd made a grant")
                warm.append(elapsed)
                auth.close()
            name = f"{callers} {label}, empty cache"
            results.add(
                Row(
                    SECTION,
                    f"{name}: grants per herd (max of {repetitions})",
                    max(grants),
                    "grants",
                    target="1",
                    passed=all(count == 1 for count in grants),
                    note=f"per repetition: {grants}",
                )
            )
            cold_ms, warm_ms = median(cold) * 1e3, median(warm) * 1e3
            ratio = median([c / w for c, w in zip(cold, warm, strict=True)])
            extra = [c - w for c, w in zip(cold, warm, strict=True)]
            results.add(Row(SECTION, f"{callers} {label}, warm cache: time to last response", warm_ms, "ms"))
            results.add(
                Row(
                    SECTION,
                    f"{name}: time to last response",
                    cold_ms,
                    "ms",
                    ratio,
                    "warm cache",
                    note=f"+{median(extra) * 1e3:.1f} ms for the one token fetch",
                )
            )
            results.chart(CHART, "cold-start herd", label, ratio)


def _check(statuses: list[int], callers: int, what: str) -> None:
    if len(statuses) != callers or any(status != 200 for status in statuses):
        raise RuntimeError(f"{what}: expected {callers} answers 200, got {sorted(set(statuses))} ({len(statuses)})")
