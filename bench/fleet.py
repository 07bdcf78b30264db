"""Fleet: 8 processes x 100 customers with per-process caches, then sharing one Redis/Valkey store.

The processes are forked from this one (as gunicorn forks its workers) and inherit one MaskinportenAuth; each asks
for every customer's token in rounds, 0.2 s apart, for three token lifetimes; the grants of the last two count. The
emulator runs in this process and counts the grants per integration (each mode has its own client id). The shared
store is a RedisTokenCache on a valkey-server (or redis-server) on loopback. Cache-hit latency is timed in this
process: ``get_token`` of a cached token through a per-process cache and through the shared store, in interleaved
rounds.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from benchkit import ORGNO, SCOPE, Results, Row, Setup, emulator_setup, median, register
from cryptography.hazmat.primitives.asymmetric import rsa
from maskinporten_auth_redis import RedisTokenCache, new_encryption_key
from maskinporten_auth_redis.testing import LocalServer

from maskinporten_auth import MaskinportenAuth
from maskinporten_auth.orgnr import is_valid_orgno

SECTION = "fleet"
CHART = "Fleet: grants per token lifetime, ratio to one per customer"
HIT_CHART = "Fleet: cache hit through the shared store, ratio to a per-process cache"
FORK = multiprocessing.get_context("fork")
ROUND_PAUSE = 0.2
HIT_CALLS = 2000


def customers(count: int) -> list[str]:
    """``count`` valid organisation numbers."""
    numbers = (f"{n:09d}" for n in range(311_000_000, 320_000_000))
    found: list[str] = []
    while len(found) < count:
        number = next(numbers)
        if is_valid_orgno(number):
            found.append(number)
    return found


def _worker(auth: MaskinportenAuth, orgs: list[str], until: float) -> None:
    views = [auth.with_consumer_org(org) for org in orgs]
    code = 0
    try:
        while time.time() < until:
            for view in views:
                view.get_token()
            time.sleep(ROUND_PAUSE)
    except Exception as exc:
        print(f"   a fleet process failed: {exc!r}", flush=True)
        code = 1
    os._exit(code)


def fleet_grants(setup: Setup, cache: RedisTokenCache | None, orgs: list[str], processes: int, lifetime: int) -> int:
    """Grants per lifetime of ``processes`` processes asking for ``orgs``' tokens, on a new integration.

    The processes run for three lifetimes; the grants of the last two are counted (the first is the cold start,
    whose length depends on how fast the machine fetches the first tokens, not on the cache).
    """
    client_id = register(setup.emulator, setup.signer)
    auth = MaskinportenAuth(
        client_id=client_id, scopes=SCOPE, signer=setup.signer, environment=setup.emulator.environment, cache=cache
    )

    def sent() -> int:
        return sum(1 for grant in setup.emulator.grants if (grant.claims or {}).get("iss") == client_id)

    warm = time.time() + lifetime
    until = warm + 2 * lifetime
    children = [FORK.Process(target=_worker, args=(auth, orgs, until)) for _ in range(processes)]
    for child in children:
        child.start()
    time.sleep(max(0.0, warm - time.time()))
    at_warm = sent()
    for child in children:
        child.join(timeout=3 * lifetime + 120)
    if any(child.exitcode != 0 for child in children):
        raise RuntimeError(f"fleet processes failed: exit codes {[child.exitcode for child in children]}")
    return (sent() - at_warm) // 2


def hit_latency(auth: MaskinportenAuth) -> float:
    """Nanoseconds per ``get_token`` of a cached token (one batch)."""
    started = time.perf_counter_ns()
    for _ in range(HIT_CALLS):
        auth.get_token()
    return (time.perf_counter_ns() - started) / HIT_CALLS


def run(results: Results, key: rsa.RSAPrivateKey, *, quick: bool = False) -> None:
    processes, count, lifetime = (4, 20, 6) if quick else (8, 100, 15)
    orgs = customers(count)
    with tempfile.TemporaryDirectory() as home, LocalServer(Path(home)) as server:
        store_key = new_encryption_key()
        with emulator_setup(key, token_lifetime=lifetime) as setup:
            for org in orgs:
                setup.emulator.delegate(org, ORGNO, SCOPE)
            alone = fleet_grants(setup, None, orgs, processes, lifetime)
            store = RedisTokenCache.from_url(server.url, encryption_key=store_key)
            shared = fleet_grants(setup, store, orgs, processes, lifetime)
            _grant_rows(results, processes, count, lifetime, alone, shared)
            _hit_rows(results, setup, RedisTokenCache.from_url(server.url, encryption_key=store_key), quick=quick)
            _joining_rows(results, setup, server.url, store_key, orgs[:20])


def _grant_rows(results: Results, processes: int, count: int, lifetime: int, alone: int, shared: int) -> None:
    fleet = f"{processes} processes x {count} customers"
    ideal = f"ideal ({count})"
    per_process = f"{processes * count} if each process fetched once per lifetime"
    results.add(
        Row(
            SECTION,
            f"{fleet}, per-process caches: grants per lifetime",
            alone,
            "grants",
            alone / count,
            ideal,
            note=per_process,
        )
    )
    results.add(Row(SECTION, f"{fleet}, shared store: grants per lifetime", shared, "grants", shared / count, ideal))
    one_process = alone / processes
    ratio = shared / one_process
    results.add(
        Row(
            SECTION,
            f"{fleet}, shared store: grants against one process's",
            shared,
            "grants",
            ratio,
            f"per-process caches / {processes}",
            target="<= 1.10x",
            passed=ratio <= 1.10,
        )
    )
    results.chart(CHART, "grants per lifetime", "per-process caches", alone / count)
    results.chart(CHART, "grants per lifetime", "shared store", shared / count)
    results.note(
        SECTION,
        f"{lifetime}-s tokens, counted over two lifetimes after a lifetime of warm-up. The default refresh policy "
        "refreshes at a random point in 50-70 % of a token's lifetime, so one process alone fetches a customer's "
        "token about 1/0.6 = 1.67 times per lifetime: the ideal of one per customer per lifetime is a floor that no "
        "cache refreshing early reaches, and the fair comparison is one process's share of the per-process caches.",
    )


def _hit_rows(results: Results, setup: Setup, store: RedisTokenCache, *, quick: bool) -> None:
    org = customers(1)[0]
    local = setup.auth().with_consumer_org(org)
    shared = setup.auth(cache=store).with_consumer_org(org)
    local.get_token()
    shared.get_token()
    plain: list[float] = []
    fleet: list[float] = []
    for _ in range(5 if quick else 30):
        plain.append(hit_latency(local))
        fleet.append(hit_latency(shared))
    ratio = median([s / p for s, p in zip(fleet, plain, strict=True)])
    results.add(Row(SECTION, "cache hit (get_token), per-process cache", median(plain), "ns"))
    results.add(
        Row(
            SECTION,
            "cache hit (get_token), shared store",
            median(fleet),
            "ns",
            ratio,
            "per-process cache",
            target="<= 1.20x",
            passed=ratio <= 1.20,
        )
    )
    results.chart(HIT_CHART, "cache hit", "shared store", ratio)


def _joining_rows(results: Results, setup: Setup, url: str, store_key: str, orgs: list[str]) -> None:
    """A process joining a warm fleet: its first token per customer comes from the store instead of a grant."""
    setup_auth = setup.auth(cache=RedisTokenCache.from_url(url, encryption_key=store_key))
    for org in orgs:
        setup_auth.with_consumer_org(org).get_token()
    grants = len(setup.emulator.grants)
    joining = setup.auth(cache=RedisTokenCache.from_url(url, encryption_key=store_key))
    started = time.perf_counter()
    for org in orgs:
        joining.with_consumer_org(org).get_token()
    from_store = (time.perf_counter() - started) / len(orgs)
    if len(setup.emulator.grants) != grants:
        raise RuntimeError("a process joining a warm fleet sent grants")
    alone = setup.auth()
    started = time.perf_counter()
    for org in orgs:
        alone.with_consumer_org(org).get_token()
    fetched = (time.perf_counter() - started) / len(orgs)
    results.add(Row(SECTION, "a new process's first token: fetched (grant)", fetched * 1e3, "ms"))
    ratio = from_store / fetched
    results.add(
        Row(SECTION, "a new process's first token: from the shared store", from_store * 1e3, "ms", ratio, "fetched")
    )
