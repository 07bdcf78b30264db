"""Many customers: one auth family with a view per customer (``with_consumer_org``), against a real emulator.

The emulator runs in its own process (as Maskinporten would be elsewhere) with every customer delegated. Per size
(1,000 and 10,000 customers; ``--quick``: 100 and 1,000) and per way of calling, a new MaskinportenAuth (empty
cache) makes one view per customer and every view asks for its first token at once:

- sync: a thread pool (8 and 32 threads) calls ``view.get_token()`` for every view;
- async: one event loop, ``asyncio.gather`` over ``await view.aget_token()`` for every view, with the default
  ``max_in_flight`` (32) and with ``max_in_flight=8``;
- no library, the floor: the same thread pools sign each view's grant and post it through one pooled
  ``httpx.Client``, reading the token from the JSON answer; nothing else (no cache, limit, deadline or checks);
- for reference, on a few hundred customers, the approach before auth families: sign on the event loop and post
  each grant through a new ``httpx.AsyncClient``, at most ``max_in_flight`` at once.

The rate is customers over the time to the last token; the ways of calling take turns (rotating order) over the
repetitions, and the rate is the median. A ratio between two ways is the median of their ratios within each
repetition. The emulator counts the grants and the peak of token requests in flight. CPU time of
this process and of the emulator's is recorded per token, to show which side bounds the rate. A latency run
repeats the library's sync pools and its default async path on 1,000 customers (``--quick``: 200) with every token
request held :data:`LATENCY` seconds by the emulator, as a Maskinporten a network away would.

What the rates are held against, and why. "Within a small factor of the signing limit" was the first target, with
the local signer's own RS256 rate (measured in the same run) as the limit. On loopback that limit is not the
ceiling: a token costs a signature (about 0.3 ms of CPU) plus an HTTP exchange in httpx (0.5-0.7 ms of CPU here)
plus the emulator's work (0.7-0.9 ms of CPU on the other core), so even the no-library floor reaches only a
quarter of the signing rate on two cores. The signing rate is still reported, but the target is against the floor
measured in the same run with the same number of threads: every way of calling the library reaches at least
:data:`TARGET_OF_FLOOR` of it. The floor posts with ``httpx.Client.post``, as an application would by hand; the
library's own client sends straight to its transport, a third less CPU per exchange, so the library can pass the
floor.

"Async at least as fast as sync" is held where asyncio is meant to help: a network away, where the requests in
flight, not the CPU, set the rate. There every way of calling has a ceiling, one latency for every round of as
many requests as it keeps in flight, and the default async path must reach :data:`TARGET_OF_CEILING` of its own (32
requests in flight: as fast as 32 threads can be, and four times as fast as 8). Its ratio to the faster thread pool
is reported beside it; both post through the same pooled connections from as many threads, so at the ceiling they
are equal, and a target of at least 1.0 on that ratio would be a coin toss. On loopback the client's CPU decides
the rate, and two comparisons say little about async: the default async path (32 requests in flight, in 32 worker
threads) against 8 threads compares thread counts (the floor itself is slower with 32 threads than with 8, from
contention for the GIL), and at as many requests in flight async does the threads' work plus the event loop's
(about 0.1 ms of CPU per token: the task, the future it waits on, and the loop's looks for fetches that ended, which
spare the workers a wake-up of the loop per token). Both are reported, without a target.

Memory: tracemalloc over creating 10,000 views (no I/O), and over filling a cache by real fetches (one thread, so
no extra connections). Cache hits: ``get_token()`` on views picked at random from families with 1, 1,000 and 10,000
tokens cached, in interleaved rounds, each beside two baselines on the same random customers: a plain dict lookup
of their keys, and a hit in the simplest per-customer cache one could write by hand (a handle per customer, a dict
of tokens, a deadline check). Any hit grows with the number of customers, the dict lookup's too: a random working
set of 10,000 customers misses the CPU caches, and every object of its own customer a hit reads is a miss. "Flat"
is held on what the library adds to that: its hit as a multiple of the hand-written one, against the same multiple
with 1 customer cached in the same round. The growth of each hit is reported beside it.
"""

from __future__ import annotations

import asyncio
import gc
import math
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
from maskinporten_auth.endpoints import GRANT_TYPE, parse_token_response
from maskinporten_auth.provider import DEFAULT_MAX_IN_FLIGHT
from maskinporten_auth.testing import organisation_numbers

SECTION = "customers"
CHART = "Many customers: first tokens per second, ratio to the no-library floor with as many threads"
HIT_CHART = "Many customers: a cache hit, ratio to 1 customer cached"
#: (customers, repetitions of every way of calling)
SIZES = ((1_000, 3), (10_000, 2))
QUICK_SIZES = ((100, 2), (1_000, 1))
THREADS = (8, 32)
ASYNC = "async, asyncio.gather"
ASYNC_8 = "async, asyncio.gather, max_in_flight=8"
BARE = "no library, {threads} threads"
OLD = "async, old approach (new httpx.AsyncClient per token)"
OLD_CUSTOMERS, QUICK_OLD_CUSTOMERS = 200, 50
#: "Async at least as fast as sync", a network away, where the requests in flight set the ceiling of every way of
#: calling: the default async path reaches at least this fraction of its ceiling (max_in_flight / latency).
TARGET_OF_CEILING = 0.9
#: "Cache-hit latency should be flat": a hit, as a multiple of the simplest hand-written cache's hit on the same
#: customers, with 1,000 and 10,000 tokens cached at most this much more than with 1.
TARGET_HIT_FLAT = 1.5
SIGNING = "the local signer's signing rate"
#: Every way of calling the library reaches at least this fraction of the no-library floor with as many threads
#: (the token path's consolidation traded the last tenth of a once-per-process cold start for fewer mechanisms).
TARGET_OF_FLOOR = 0.7
#: Seconds the emulator holds every token request in the latency run, as a Maskinporten a network away would.
LATENCY = 0.1
LATENCY_CUSTOMERS, QUICK_LATENCY_CUSTOMERS = 1_000, 200

Tokens = tuple[list[str], float | None]  # the tokens, and the event loop's CPU seconds (async only)


@dataclass(frozen=True)
class Way:
    """A way of asking every view for its first token at once."""

    label: str
    body: Callable[[list[MaskinportenAuth]], Tokens]
    #: Token requests at once: the threads of a pool, or the family's max_in_flight for async.
    concurrency: int
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: False for the floor, which asks Maskinporten without the library.
    library: bool = True


@dataclass
class Cold:
    """One cold run: every view of a new family asked for its first token at once."""

    way: Way
    customers: int
    seconds: float
    grants: int
    issued: int
    peak: int
    limit: int
    client_cpu: float
    emulator_cpu: float | None
    loop_cpu: float | None
    repetition: int = 0

    @property
    def label(self) -> str:
        return self.way.label

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


def bare_run(threads: int) -> Callable[[list[MaskinportenAuth]], Tokens]:
    """The floor: sign each view's grant and post it through one pooled httpx.Client, in ``threads`` threads."""

    def run(views: list[MaskinportenAuth]) -> Tokens:
        limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
        with httpx.Client(timeout=30, limits=limits) as http:

            def one(view: MaskinportenAuth) -> str:
                form = {"grant_type": GRANT_TYPE, "assertion": view._grants.build(time.time())}
                response = http.post(view.environment.token_endpoint, data=form)
                response.raise_for_status()
                return str(response.json()["access_token"])

            with ThreadPoolExecutor(threads) as pool:
                return list(pool.map(one, views)), None

    return run


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

    def cold(self, way: Way, count: int) -> tuple[Cold, MaskinportenAuth]:
        """Run ``way`` over the ``count`` views of a new family; return the run and the (warm) family."""
        family = self.family(way.max_in_flight)
        views = self.views(family, count)
        before = self.child.stats()
        emulator_before = self.child.cpu_seconds()
        cpu_before = time.process_time()
        started = time.perf_counter()
        tokens, loop_cpu = way.body(views)
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu_before
        emulator_after = self.child.cpu_seconds()
        after = self.child.stats()
        if len(tokens) != count or len(set(tokens)) != count:
            raise RuntimeError(f"{way.label}: expected {count} different tokens, got {len(set(tokens))}")
        emulator_cpu = None if emulator_before is None or emulator_after is None else emulator_after - emulator_before
        cold = Cold(
            way,
            count,
            seconds,
            grants=after["token_requests"] - before["token_requests"],
            issued=after["tokens_issued"] - before["tokens_issued"],
            peak=after["peak_in_flight"],
            limit=way.max_in_flight,
            client_cpu=client_cpu,
            emulator_cpu=emulator_cpu,
            loop_cpu=loop_cpu,
        )
        return cold, family


def _signing_input(view: MaskinportenAuth) -> bytes:
    """What the view's grants sign: the JWS header and claims of a grant issued now."""
    header, claims, _ = view._grants.build(time.time()).split(".")
    return f"{header}.{claims}".encode("ascii")


def signing_rates(view: MaskinportenAuth, *, chunks: int, per_chunk: int = 200) -> list[float]:
    """Signatures per second of a grant's signing input, one thread, per chunk."""
    signing_input = _signing_input(view)
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


class HandToken:
    """The least a token cache entry can be: the token and the moment it needs a refresh."""

    __slots__ = ("refresh_at", "value")

    def __init__(self, value: str, refresh_at: float) -> None:
        self.value = value
        self.refresh_at = refresh_at


class HandCustomer:
    """The least a per-customer handle can be: its cache key."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


def hand_hit(tokens: dict[str, HandToken], customer: HandCustomer) -> str | None:
    """A hit in the simplest per-customer token cache one could write by hand: a lookup and a deadline check."""
    token = tokens.get(customer.key)
    if token is not None and time.monotonic() < token.refresh_at:
        return token.value
    return None


def hit_latencies(
    families: dict[int, list[MaskinportenAuth]], *, rounds: int, calls: int
) -> tuple[dict[int, list[float]], dict[int, list[float]], dict[int, list[float]]]:
    """Nanoseconds per ``get_token()`` on random warm views, per family and round (interleaved, rotating).

    Also, on the same random customers: a plain dict lookup of their cache keys (the floor the memory hierarchy
    sets), and a hit in the simplest cache one could write by hand (:func:`hand_hit`: a handle per customer, a dict
    of tokens, a deadline check), which reads as many objects of its own customer as any per-customer cache must.
    """
    rng = random.Random(15)
    picks = {size: [rng.choice(views) for _ in range(calls)] for size, views in families.items()}
    plain = {size: {view.cache_key: view for view in views} for size, views in families.items()}
    keys = {size: [view.cache_key for view in chosen] for size, chosen in picks.items()}
    far = time.monotonic() + 3600
    hand_tokens = {
        size: {view.cache_key: HandToken(view.get_token(), far) for view in views} for size, views in families.items()
    }
    hand_picks: dict[int, list[HandCustomer]] = {}
    for size, views in families.items():
        handles = {view.cache_key: HandCustomer(view.cache_key) for view in views}
        hand_picks[size] = [handles[view.cache_key] for view in picks[size]]
    for chosen in picks.values():
        for view in chosen:
            view.get_token()
    samples: dict[int, list[float]] = {size: [] for size in families}
    floor: dict[int, list[float]] = {size: [] for size in families}
    hand: dict[int, list[float]] = {size: [] for size in families}
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
                tokens = hand_tokens[size]
                started = time.perf_counter_ns()
                for handle in hand_picks[size]:
                    hand_hit(tokens, handle)
                hand[size].append((time.perf_counter_ns() - started) / calls)
    finally:
        gc.enable()
    return samples, floor, hand


# The section


def ways_of_calling() -> list[Way]:
    """Every way of calling, floors included, for the cold runs on loopback."""
    return [
        *(Way(f"sync, {threads} threads", sync_run(threads), threads) for threads in THREADS),
        Way(ASYNC, async_run, DEFAULT_MAX_IN_FLIGHT),
        Way(ASYNC_8, async_run, 8, max_in_flight=8),
        *(Way(BARE.format(threads=threads), bare_run(threads), threads, library=False) for threads in THREADS),
    ]


def cold_runs(
    customers: Customers, ways: list[Way], size: int, repetitions: int, between: Callable[[], None]
) -> tuple[list[Cold], MaskinportenAuth]:
    """Every way ``repetitions`` times in rotating order; ``between`` runs before each. Returns the runs and the
    warm family of the first library way's first run (kept for the cache-hit rounds)."""
    runs: list[Cold] = []
    kept: MaskinportenAuth | None = None
    for index in range(repetitions):
        shift = index % len(ways)
        for way in ways[shift:] + ways[:shift]:
            between()
            cold, family = customers.cold(way, size)
            cold.repetition = index
            runs.append(cold)
            if kept is None and way is ways[0]:
                kept = family
            else:
                family.close()
    assert kept is not None
    return runs, kept


def run(setup: Setup, results: Results, *, quick: bool = False) -> None:
    plan = QUICK_SIZES if quick else SIZES
    old_customers = QUICK_OLD_CUSTOMERS if quick else OLD_CUSTOMERS
    latency_customers = QUICK_LATENCY_CUSTOMERS if quick else LATENCY_CUSTOMERS
    orgnos = organisation_numbers(max(size for size, _ in plan))
    client = {"client_id": setup.client_id, "orgno": ORGNO, "scope": SCOPE, "kid": setup.signer.kid or ""}
    with child_emulator(**client, jwk=setup.signer.public_jwk(), token_lifetime=3600) as child:
        child.delegate(orgnos)
        customers = Customers(setup, child, orgnos)
        probe = customers.family()
        probe_view = probe.with_consumer_org(orgnos[0])
        signing: list[float] = []

        def sample_signing() -> None:
            signing.extend(signing_rates(probe_view, chunks=3))

        ways = ways_of_calling()
        warm: dict[int, MaskinportenAuth] = {}
        colds: dict[int, list[Cold]] = {}
        for size, repetitions in plan:
            colds[size], warm[size] = cold_runs(customers, ways, size, repetitions, sample_signing)
        sample_signing()
        old, family = customers.cold(Way(OLD, old_async_run, DEFAULT_MAX_IN_FLIGHT), old_customers)
        family.close()

        latency_ways = [way for way in ways if way.library and way.label != ASYNC_8]
        slow, family = cold_runs(
            customers,
            latency_ways,
            latency_customers,
            1 if quick else 3,
            lambda: child.add_latency(LATENCY, latency_customers),
        )
        child.add_latency(0, 0)
        family.close()

        limit = median(signing)
        results.note(
            SECTION,
            f"signing rate: {limit:.0f} RS256 signatures/s of the {len(_signing_input(probe_view))}-byte "
            f"signing input of a grant, one thread (median of {len(signing)} chunks of 200 taken before each cold "
            f"run; range {min(signing):.0f}-{max(signing):.0f})",
        )
        for size, runs in colds.items():
            _report_cold(results, size, runs, limit)
        _report_old(results, old, [row for row in results.rows if row.name.startswith(f"{plan[0][0]} customers, ")])
        _report_latency(results, latency_customers, slow)
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
        samples, floor, hand = hit_latencies(families, rounds=20 if quick else 100, calls=2_000)
        _report_hits(results, samples, floor, hand)
        for family in [one, *warm.values()]:
            family.close()


def _cpu_note(cold: Cold) -> str:
    per_token = [f"this process {cold.client_cpu / cold.customers * 1e6:.0f} µs CPU/token"]
    if cold.loop_cpu is not None:
        per_token.append(f"of which the event loop {cold.loop_cpu / cold.customers * 1e6:.0f} µs")
    if cold.emulator_cpu is not None:
        per_token.append(f"emulator {cold.emulator_cpu / cold.customers * 1e6:.0f} µs CPU/token")
    return ", ".join(per_token)


def _rates(runs: list[Cold]) -> dict[str, float]:
    """The median rate of every way, in the order the ways first ran."""
    labels = dict.fromkeys(cold.label for cold in runs)
    return {label: median([cold.rate for cold in runs if cold.label == label]) for label in labels}


def _paired(runs: list[Cold], label: str, baseline: str) -> float:
    """The median over repetitions of ``label``'s rate over ``baseline``'s in the same repetition.

    Ratios of neighbouring runs, so that a machine that gets busier or quieter during the section (other
    processes) moves both rates of a pair.
    """
    rates = {(cold.label, cold.repetition): cold.rate for cold in runs}
    repetitions = sorted({cold.repetition for cold in runs})
    return median([rates[label, index] / rates[baseline, index] for index in repetitions])


def _run_note(runs: list[Cold], label: str) -> str:
    mine = [cold for cold in runs if cold.label == label]
    typical = sorted(mine, key=lambda cold: cold.rate)[len(mine) // 2]
    each = f"{len(mine)} runs: " + ", ".join(f"{cold.rate:.0f}" for cold in mine) + "/s; " if len(mine) > 1 else ""
    return f"{each}{typical.seconds:.2f} s to the last token; {_cpu_note(typical)}"


def _report_cold(results: Results, size: int, runs: list[Cold], limit: float) -> None:
    rates = _rates(runs)
    ways = {cold.label: cold.way for cold in runs}
    floors = {way.concurrency: label for label, way in ways.items() if not way.library}
    for label, way in ways.items():
        signing = f"{rates[label] / limit:.3f}{TIMES} the signing rate"
        if not way.library:
            results.add(
                Row(
                    SECTION,
                    f"{size} customers, {label}: first tokens per second",
                    rates[label],
                    "tokens/s",
                    rates[label] / limit,
                    SIGNING,
                    note=f"the floor: a signature and an httpx exchange per token; {_run_note(runs, label)}",
                )
            )
            continue
        floor = floors[way.concurrency]
        ratio = _paired(runs, label, floor)
        results.add(
            Row(
                SECTION,
                f"{size} customers, {label}: first tokens per second",
                rates[label],
                "tokens/s",
                ratio,
                floor,
                target=f"≥ {TARGET_OF_FLOOR}{TIMES}",
                passed=ratio >= TARGET_OF_FLOOR,
                note=f"{signing}; {_run_note(runs, label)}",
            )
        )
        results.chart(CHART, f"{size} customers", label, ratio)
    results.chart_targets[CHART] = TARGET_OF_FLOOR
    results.chart_target_bounds[CHART] = "≥"
    library = [cold for cold in runs if cold.way.library]
    _report_grants(results, f"{size} customers", library, size)
    _report_peaks(results, f"{size} customers", library)
    for async_label, sync_label in ((ASYNC, f"sync, {DEFAULT_MAX_IN_FLIGHT} threads"), (ASYNC_8, "sync, 8 threads")):
        loop_cpu = median(
            [cold.loop_cpu / cold.customers for cold in runs if cold.label == async_label and cold.loop_cpu]
        )
        results.add(
            Row(
                SECTION,
                f"{size} customers: {async_label} against {sync_label} (as many requests in flight)",
                rates[async_label],
                "tokens/s",
                _paired(runs, async_label, sync_label),
                sync_label,
                note=f"on loopback, where the client's CPU bounds the rate, async does the threads' work plus the "
                f"event loop's ({loop_cpu * 1e6:.0f} µs CPU/token); the target is held {LATENCY * 1000:.0f} ms away",
            )
        )


def _report_grants(results: Results, what: str, runs: list[Cold], size: int) -> None:
    """One grant per customer in every run: the worst run's count, and each run's."""
    results.add(
        Row(
            SECTION,
            f"{what}: grants the emulator received, every cold run of the library",
            max(runs, key=lambda cold: abs(cold.grants - size)).grants,
            "grants",
            target=f"= {size} in each of the {len(runs)} runs",
            passed=all(cold.grants == size and cold.issued == size for cold in runs),
            note=f"per run: {', '.join(str(cold.grants) for cold in runs)}; "
            f"tokens issued: {', '.join(str(cold.issued) for cold in runs)}",
        )
    )


def _report_peaks(results: Results, what: str, runs: list[Cold]) -> None:
    labels = list(dict.fromkeys(cold.label for cold in runs))
    peaks = {label: max(cold.peak for cold in runs if cold.label == label) for label in labels}
    limits = {cold.label: cold.limit for cold in runs}
    results.add(
        Row(
            SECTION,
            f"{what}: peak token requests in flight, every cold run",
            max(peaks.values()),
            "requests",
            target="≤ the run's max_in_flight",
            passed=all(cold.peak <= cold.limit for cold in runs),
            note="; ".join(f"{label}: {peaks[label]} (limit {limits[label]})" for label in labels),
        )
    )


def _report_latency(results: Results, size: int, runs: list[Cold]) -> None:
    rates = _rates(runs)
    ways = {cold.label: cold.way for cold in runs}
    what = f"{size} customers, {LATENCY * 1000:.0f} ms away"
    for label, way in ways.items():
        ceiling = size / (math.ceil(size / way.concurrency) * LATENCY)  # every round of requests takes the latency
        held = label == ASYNC
        results.add(
            Row(
                SECTION,
                f"{what}, {label}: first tokens per second",
                rates[label],
                "tokens/s",
                rates[label] / ceiling,
                f"its ceiling, {way.concurrency} requests in flight at a time: {ceiling:.0f} tokens/s",
                target=f"≥ {TARGET_OF_CEILING}{TIMES}" if held else "",
                passed=rates[label] / ceiling >= TARGET_OF_CEILING if held else None,
                note=_run_note(runs, label),
            )
        )
    _report_grants(results, what, runs, size)
    _report_peaks(results, what, runs)
    fastest = max((label for label in rates if label.startswith("sync")), key=lambda label: rates[label])
    results.add(
        Row(
            SECTION,
            f"{what}: async against the faster thread pool",
            rates[ASYNC],
            "tokens/s",
            _paired(runs, ASYNC, fastest),
            fastest,
            note="both run on the same pooled connections in as many threads, so at the ceiling they are equal",
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


def _report_hits(
    results: Results,
    samples: dict[int, list[float]],
    floor: dict[int, list[float]],
    hand: dict[int, list[float]],
) -> None:
    def growth(values: dict[int, list[float]], size: int) -> float:
        """How much slower than with 1 customer cached, round by round."""
        return median([value / base for value, base in zip(values[size], values[1], strict=True)])

    over_hand = {
        size: [mine / simplest for mine, simplest in zip(values, hand[size], strict=True)]
        for size, values in samples.items()
    }
    results.chart_targets[HIT_CHART] = TARGET_HIT_FLAT
    for size, values in samples.items():
        ratio = growth(over_hand, size)
        flat = size > 1
        results.add(
            Row(
                SECTION,
                f"cache hit, {size} customer{'s' if flat else ''} cached: get_token() on a random view, as a "
                "multiple of the simplest hand-written cache's hit on the same customers",
                median(values),
                "ns",
                ratio,
                "the same multiple with 1 customer cached",
                target=f"≤ {TARGET_HIT_FLAT}{TIMES}" if flat else "",
                passed=ratio <= TARGET_HIT_FLAT if flat else None,
                note=f"{median(over_hand[size]):.2f}{TIMES} the hand-written hit ({median(hand[size]):.0f} ns); "
                f"against 1 customer cached, the whole hit: {growth(samples, size):.2f}{TIMES}, the hand-written hit: "
                f"{growth(hand, size):.2f}{TIMES}, a dict lookup alone: {growth(floor, size):.2f}{TIMES}",
            )
        )
        if flat:
            results.chart(HIT_CHART, "cache hit", f"{size} customers cached", ratio)
