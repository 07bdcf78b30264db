"""Many customers: one auth family with a view per customer (``with_consumer_org``), against a real emulator.

The emulator runs in its own process (as Maskinporten would be elsewhere) with every customer delegated. Per size
(1,000 and 10,000 customers; ``--quick``: 100 and 1,000) and per way of calling, a new MaskinportenAuth (empty
cache) makes one view per customer and every view asks for its first token at once:

- sync: a thread pool (8 and 32 threads) calls ``view.get_token()`` for every view;
- async: one event loop, ``asyncio.gather`` over ``await view.aget_token()`` for every view; for reference also
  with ``max_in_flight=8``, which sizes the worker threads of async fetches like the smaller thread pool;
- for reference, on a few hundred customers, the approach before auth families: sign on the event loop and post
  each grant through a new ``httpx.AsyncClient``, at most ``max_in_flight`` at once.

The rate is customers over the time to the last token; the ways of calling take turns (rotating order) over the
repetitions, and the rate is the median. The limit it is compared with is the local signer's own rate in the same
run: RS256 signatures of a grant's signing input per second in one thread, sampled before every cold run. The
emulator counts the grants; the provider reports the peak of token requests in flight. CPU time of this process
and of the emulator's is recorded per token, to show which side bounds the rate.

Memory: tracemalloc over creating 10,000 views (no I/O), and over filling a cache by real fetches (one thread, so
no extra connections). Cache hits: ``get_token()`` on views picked at random from families with 1, 1,000 and 10,000
tokens cached, in interleaved rounds; the ratio is against the 1-customer family in the same round.
"""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from benchkit import ORGNO, SCOPE, TIMES, Results, Row, Setup, median
from emulator_process import ChildEmulator, child_emulator

from maskinporten_auth import MaskinportenAuth
from maskinporten_auth.provider import DEFAULT_MAX_IN_FLIGHT
from maskinporten_auth.testing import organisation_numbers
from maskinporten_auth.token_client import GRANT_TYPE, parse_token_response

SECTION = "customers"
CHART = "Many customers: first tokens per second, ratio to the local signer's signing rate"
HIT_CHART = "Many customers: cache hit on a random view, ratio to 1 customer cached"
#: (customers, repetitions of every way of calling)
SIZES = ((1_000, 3), (10_000, 1))
QUICK_SIZES = ((100, 2), (1_000, 1))
THREADS = (8, 32)
ASYNC = "async, asyncio.gather"
ASYNC_8 = "async, asyncio.gather, max_in_flight=8"
OLD = "async, old approach (new httpx.AsyncClient per token)"
OLD_CUSTOMERS, QUICK_OLD_CUSTOMERS = 200, 50
#: "Both within a small factor of the signing limit", read as: at least half the signer's own rate.
TARGET_OF_SIGNING = 0.5
#: "Async at least as fast as sync": against the faster of the thread pools.
TARGET_ASYNC_VS_SYNC = 1.0
#: "Cache-hit latency should be flat": with 1,000 and 10,000 tokens cached at most this much slower than with 1.
TARGET_HIT_FLAT = 1.5
SIGNING = "the local signer's signing rate"

Tokens = tuple[list[str], float | None]  # the tokens, and the event loop's CPU seconds (async only)


@dataclass
class Cold:
    """One cold run: every view of a new family asked for its first token at once."""

    label: str
    customers: int
    seconds: float
    grants: int
    issued: int
    peak: int
    limit: int
    client_cpu: float
    emulator_cpu: float | None
    loop_cpu: float | None

    @property
    def rate(self) -> float:
        return self.customers / self.seconds


# Ways of asking every view for its first token at once


def sync_run(threads: int) -> Callable[[list[MaskinportenAuth]], Tokens]:
    def run(views: list[MaskinportenAuth]) -> Tokens:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(MaskinportenAuth.get_token, views)), None

    return run


def async_run(views: list[MaskinportenAuth]) -> Tokens:
    async def gather() -> Tokens:
        started = time.thread_time()
        tokens = await asyncio.gather(*(view.aget_token() for view in views))
        return list(tokens), time.thread_time() - started

    return asyncio.run(gather())


def old_async_run(views: list[MaskinportenAuth]) -> Tokens:
    """The approach before auth families: sign on the loop, post through a new AsyncClient per token."""

    async def one(view: MaskinportenAuth, gate: asyncio.Semaphore) -> str:
        async with gate:
            grant = view._grants.build(time.time())  # a local key signed in the calling thread, on the loop
            form = {"grant_type": GRANT_TYPE, "assertion": grant}
            async with httpx.AsyncClient(timeout=30, follow_redirects=False) as client:
                response = await client.post(view.environment.token_endpoint, data=form)
            response.raise_for_status()
            return parse_token_response(response).access_token

    async def gather() -> Tokens:
        gate = asyncio.Semaphore(DEFAULT_MAX_IN_FLIGHT)
        started = time.thread_time()
        tokens = await asyncio.gather(*(one(view, gate) for view in views))
        return list(tokens), time.thread_time() - started

    return asyncio.run(gather())


class Customers:
    """Families of views against one child emulator, which counts the grants."""

    def __init__(self, setup: Setup, child: ChildEmulator, orgnos: Sequence[str]) -> None:
        self.setup = setup
        self.child = child
        self.orgnos = orgnos

    def family(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> MaskinportenAuth:
        return MaskinportenAuth(
            client_id=self.setup.client_id,
            scopes=SCOPE,
            signer=self.setup.signer,
            environment=self.child.environment,
            max_in_flight=max_in_flight,
        )

    def views(self, family: MaskinportenAuth, count: int) -> list[MaskinportenAuth]:
        return [family.with_consumer_org(orgno) for orgno in self.orgnos[:count]]

    def cold(
        self,
        label: str,
        count: int,
        body: Callable[[list[MaskinportenAuth]], Tokens],
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> tuple[Cold, MaskinportenAuth]:
        """Run ``body`` over the ``count`` views of a new family; return the run and the (warm) family."""
        family = self.family(max_in_flight)
        views = self.views(family, count)
        before = self.child.stats()
        emulator_before = self.child.cpu_seconds()
        cpu_before = time.process_time()
        started = time.perf_counter()
        tokens, loop_cpu = body(views)
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu_before
        emulator_after = self.child.cpu_seconds()
        after = self.child.stats()
        if len(tokens) != count or len(set(tokens)) != count:
            raise RuntimeError(f"{label}: expected {count} different tokens, got {len(set(tokens))}")
        emulator_cpu = None if emulator_before is None or emulator_after is None else emulator_after - emulator_before
        cold = Cold(
            label,
            count,
            seconds,
            grants=after["token_requests"] - before["token_requests"],
            issued=after["tokens_issued"] - before["tokens_issued"],
            peak=family._provider.peak_in_flight,
            limit=max_in_flight,
            client_cpu=client_cpu,
            emulator_cpu=emulator_cpu,
            loop_cpu=loop_cpu,
        )
        return cold, family


def signing_rates(view: MaskinportenAuth, *, chunks: int, per_chunk: int = 200) -> list[float]:
    """Signatures per second of a grant's signing input, one thread, per chunk."""
    signing_input = view._grants._signing_input(time.time())
    sign = view.signer.sign
    rates = []
    for _ in range(chunks):
        started = time.perf_counter()
        for _ in range(per_chunk):
            sign(signing_input)
        rates.append(per_chunk / (time.perf_counter() - started))
    return rates


# Memory


def traced_bytes(body: Callable[[], object]) -> int:
    """Bytes that ``body`` allocated and that are still alive after it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        body()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def bytes_per_view(customers: Customers, count: int) -> float:
    family = customers.family()
    orgnos = customers.orgnos[:count]
    views: list[MaskinportenAuth | None] = [None] * count  # the list itself is not counted

    def make() -> None:
        for index, orgno in enumerate(orgnos):
            views[index] = family.with_consumer_org(orgno)

    allocated = traced_bytes(make)
    family.close()
    return allocated / count


def bytes_per_cached(customers: Customers, count: int) -> tuple[float, float]:
    """Bytes per token cached by real fetches, and the mean size of the token string itself."""
    family = customers.family()
    warm, *views = customers.views(family, count + 1)
    warm.get_token()  # the HTTP client and its connection are not a customer's cost

    def fill() -> None:
        for view in views:
            view.get_token()

    allocated = traced_bytes(fill)
    cached = len(family.cache)  # type: ignore[arg-type]
    token_bytes = median([sys.getsizeof(view.get_token()) for view in views])
    family.close()
    if cached != count + 1:
        raise RuntimeError(f"expected {count + 1} cached tokens, found {cached}")
    return allocated / count, token_bytes


# Cache hits


def hit_latencies(
    families: dict[int, list[MaskinportenAuth]], *, rounds: int, calls: int
) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """Nanoseconds per ``get_token()`` on random warm views, per family and round (interleaved, rotating).

    Also, as the floor the memory hierarchy sets, a plain dict lookup of the same random cache keys.
    """
    rng = random.Random(15)
    picks = {size: [rng.choice(views) for _ in range(calls)] for size, views in families.items()}
    plain = {size: {view.cache_key: view for view in views} for size, views in families.items()}
    keys = {size: [view.cache_key for view in chosen] for size, chosen in picks.items()}
    for chosen in picks.values():
        for view in chosen:
            view.get_token()
    samples: dict[int, list[float]] = {size: [] for size in families}
    floor: dict[int, list[float]] = {size: [] for size in families}
    sizes = list(families)
    gc.disable()
    try:
        for index in range(rounds):
            shift = index % len(sizes)
            for size in sizes[shift:] + sizes[:shift]:
                chosen = picks[size]
                started = time.perf_counter_ns()
                for view in chosen:
                    view.get_token()
                samples[size].append((time.perf_counter_ns() - started) / calls)
                lookup = plain[size].get
                started = time.perf_counter_ns()
                for key in keys[size]:
                    lookup(key)
                floor[size].append((time.perf_counter_ns() - started) / calls)
    finally:
        gc.enable()
    return samples, floor


# The section


def run(setup: Setup, results: Results, *, quick: bool = False) -> None:
    plan = QUICK_SIZES if quick else SIZES
    old_customers = QUICK_OLD_CUSTOMERS if quick else OLD_CUSTOMERS
    orgnos = organisation_numbers(max(size for size, _ in plan))
    client = {"client_id": setup.client_id, "orgno": ORGNO, "scope": SCOPE, "kid": setup.signer.kid or ""}
    with child_emulator(**client, jwk=setup.signer.public_jwk(), token_lifetime=3600) as child:
        child.delegate(orgnos)
        customers = Customers(setup, child, orgnos)
        probe = customers.family()
        probe_view = probe.with_consumer_org(orgnos[0])
        signing: list[float] = []
        bodies: list[tuple[str, Callable[[list[MaskinportenAuth]], Tokens], int]] = [
            *((f"sync, {threads} threads", sync_run(threads), DEFAULT_MAX_IN_FLIGHT) for threads in THREADS),
            (ASYNC, async_run, DEFAULT_MAX_IN_FLIGHT),
            (ASYNC_8, async_run, 8),
        ]
        warm: dict[int, MaskinportenAuth] = {}
        colds: dict[int, list[Cold]] = {}
        for size, repetitions in plan:
            runs = colds[size] = []
            for index in range(repetitions):
                shift = index % len(bodies)
                for label, body, max_in_flight in bodies[shift:] + bodies[:shift]:
                    signing += signing_rates(probe_view, chunks=3)
                    cold, family = customers.cold(label, size, body, max_in_flight)
                    runs.append(cold)
                    if size not in warm and label == bodies[0][0]:
                        warm[size] = family  # kept for the cache-hit rounds
                    else:
                        family.close()
        signing += signing_rates(probe_view, chunks=3)
        old, family = customers.cold(OLD, old_customers, old_async_run)
        family.close()
        limit = median(signing)
        results.note(
            SECTION,
            f"signing limit: {limit:.0f} RS256 signatures/s of the {len(probe_view._grants._signing_input(0))}-byte "
            f"signing input of a grant, one thread (median of {len(signing)} chunks of 200 taken before each cold "
            f"run; range {min(signing):.0f}-{max(signing):.0f})",
        )
        for size, runs in colds.items():
            _report_cold(results, size, runs, limit)
        _report_old(results, old, [row for row in results.rows if row.name.startswith(f"{plan[0][0]} customers, ")])
        probe.close()

        view_count = 1_000 if quick else 10_000
        fill_count = 200 if quick else 2_000
        per_view = bytes_per_view(customers, view_count)
        per_cached, token_bytes = bytes_per_cached(customers, fill_count)
        results.add(
            Row(
                SECTION,
                f"memory per view ({view_count} views made by with_consumer_org, tracemalloc)",
                per_view,
                "bytes",
            )
        )
        results.add(
            Row(
                SECTION,
                f"memory per cached customer ({fill_count} tokens fetched, tracemalloc)",
                per_cached,
                "bytes",
                note=f"the token (a {token_bytes:.0f}-byte string from the emulator), its deadlines and its cache "
                "entry, plus anything else a fetch leaves behind",
            )
        )

        one = customers.family()
        families = {1: customers.views(one, 1)}
        families[1][0].get_token()
        for size, family in warm.items():
            families[size] = customers.views(family, size)
        samples, floor = hit_latencies(families, rounds=20 if quick else 100, calls=2_000)
        _report_hits(results, samples, floor)
        for family in [one, *warm.values()]:
            family.close()


def _cpu_note(cold: Cold) -> str:
    per_token = [f"this process {cold.client_cpu / cold.customers * 1e6:.0f} µs CPU/token"]
    if cold.loop_cpu is not None:
        per_token.append(f"of which the event loop {cold.loop_cpu / cold.customers * 1e6:.0f} µs")
    if cold.emulator_cpu is not None:
        per_token.append(f"emulator {cold.emulator_cpu / cold.customers * 1e6:.0f} µs CPU/token")
    return ", ".join(per_token)


def _report_cold(results: Results, size: int, runs: list[Cold], limit: float) -> None:
    labels = list(dict.fromkeys(cold.label for cold in runs))
    rates = {label: median([cold.rate for cold in runs if cold.label == label]) for label in labels}
    fastest = max((label for label in labels if label.startswith("sync")), key=lambda label: rates[label])
    for label in labels:
        mine = [cold for cold in runs if cold.label == label]
        typical = sorted(mine, key=lambda cold: cold.rate)[len(mine) // 2]
        ratio = rates[label] / limit
        each = f"{len(mine)} runs: " + ", ".join(f"{cold.rate:.0f}" for cold in mine) + "/s; " if len(mine) > 1 else ""
        reference = label == ASYNC_8  # not a default configuration: no target
        if reference:
            each = f"{rates[label] / rates[fastest]:.3f}{TIMES} {fastest}; {each}"
        results.add(
            Row(
                SECTION,
                f"{size} customers, {label}: first tokens per second",
                rates[label],
                "tokens/s",
                ratio,
                SIGNING,
                target="" if reference else f"≥ {TARGET_OF_SIGNING}{TIMES} the signing rate",
                passed=None if reference else ratio >= TARGET_OF_SIGNING,
                note=f"{each}{typical.seconds:.2f} s to the last token; {_cpu_note(typical)}",
            )
        )
        results.chart(CHART, f"{size} customers", label, ratio)
    results.chart_targets[CHART] = TARGET_OF_SIGNING
    results.chart_target_bounds[CHART] = "≥"
    results.add(
        Row(
            SECTION,
            f"{size} customers: grants the emulator received, every cold run",
            max(runs, key=lambda cold: abs(cold.grants - size)).grants,
            "grants",
            target=f"= {size} in each of the {len(runs)} runs",
            passed=all(cold.grants == size and cold.issued == size for cold in runs),
            note=f"per run: {', '.join(str(cold.grants) for cold in runs)}; "
            f"tokens issued: {', '.join(str(cold.issued) for cold in runs)}",
        )
    )
    peaks = {label: max(cold.peak for cold in runs if cold.label == label) for label in labels}
    limits = {cold.label: cold.limit for cold in runs}
    results.add(
        Row(
            SECTION,
            f"{size} customers: peak token requests in flight, every cold run",
            max(peaks.values()),
            "requests",
            target="≤ the run's max_in_flight",
            passed=all(cold.peak <= cold.limit for cold in runs),
            note="; ".join(f"{label}: {peaks[label]} (limit {limits[label]})" for label in labels),
        )
    )
    ratio = rates[ASYNC] / rates[fastest]
    results.add(
        Row(
            SECTION,
            f"{size} customers: async against the faster thread pool",
            rates[ASYNC],
            "tokens/s",
            ratio,
            fastest,
            target=f"≥ {TARGET_ASYNC_VS_SYNC}{TIMES}",
            passed=ratio >= TARGET_ASYNC_VS_SYNC,
        )
    )


def _report_old(results: Results, old: Cold, first_size_rows: list[Row]) -> None:
    current = next(row for row in first_size_rows if row.name.endswith(f"{ASYNC}: first tokens per second"))
    assert current.value is not None
    results.add(
        Row(
            SECTION,
            f"{old.customers} customers, {OLD}: first tokens per second",
            old.rate,
            "tokens/s",
            old.rate / current.value,
            f"current async path ({current.name.split(' customers')[0]} customers)",
            note=f"{old.seconds:.2f} s to the last token; grants {old.grants}; {_cpu_note(old)}",
        )
    )


def _report_hits(results: Results, samples: dict[int, list[float]], floor: dict[int, list[float]]) -> None:
    base, floor_base = samples[1], floor[1]
    results.chart_targets[HIT_CHART] = TARGET_HIT_FLAT
    for size, values in samples.items():
        ratio = median([v / b for v, b in zip(values, base, strict=True)])
        floor_ratio = median([v / b for v, b in zip(floor[size], floor_base, strict=True)])
        flat = size > 1
        results.add(
            Row(
                SECTION,
                f"cache hit, {size} customer{'s' if flat else ''} cached: get_token() on a random view",
                median(values),
                "ns",
                ratio,
                "1 customer cached",
                target=f"≤ {TARGET_HIT_FLAT}{TIMES}" if flat else "",
                passed=ratio <= TARGET_HIT_FLAT if flat else None,
                note=f"a plain dict lookup of the same keys: {median(floor[size]):.0f} ns, {floor_ratio:.2f}{TIMES}",
            )
        )
        if flat:
            results.chart(HIT_CHART, "cache hit", f"{size} customers cached", ratio)
