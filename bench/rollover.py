"""Token rollover with a slow (KMS-like, 50 ms) signer: request latency across rollovers against steady state.

Workers send requests back to back to a loopback keep-alive server through one MaskinportenAuth whose signer sleeps
50 ms per signature. In steady state the token outlives the phase; in the rollover phases an emulator issues
5-second tokens, so each phase sees a refresh. The refresh policy's 2-s minimum margin is lowered to 0.5 s
(``RefreshPolicy(min_margin=0.5)``), which keeps the proportions of a 120-s token: early refresh from 50-70 % of
the lifetime, callers made to wait only in the last 10 %.
Phases alternate (steady, default, background_refresh) so drift on the machine hits all three alike; latencies are
pooled per configuration.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
from benchkit import ORGNO, SCOPE, TIMES, Results, Row, Setup, percentile
from emulator_process import emulator_in_child
from loopback import loopback_server

from maskinporten_auth import LocalKeySigner, MaskinportenAuth, RefreshPolicy, TokenEvent

SECTION = "rollover"
SIGN_DELAY = 0.05
TOKEN_LIFETIME = 5
TARGET_P99 = 1.2
REFRESH = RefreshPolicy(min_margin=0.5)
CHART = "Rollover with a 50 ms signer: p99 latency, ratio to steady state"
THREADS = 4
TASKS = 4


class SlowSigner(LocalKeySigner):
    """A local key that takes 50 ms per signature, like a remote KMS."""

    def sign(self, signing_input: bytes) -> bytes:
        time.sleep(SIGN_DELAY)
        return super().sign(signing_input)

    async def asign(self, signing_input: bytes) -> bytes:
        await asyncio.sleep(SIGN_DELAY)
        return super().sign(signing_input)


def threads_phase(auth: MaskinportenAuth, url: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    with httpx.Client(auth=auth, limits=limits, timeout=30) as client:
        client.get(url)
        deadline = time.perf_counter() + seconds

        def worker() -> None:
            mine: list[float] = []
            while (started := time.perf_counter()) < deadline:
                client.get(url)
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return latencies


def tasks_phase(auth: MaskinportenAuth, url: str, seconds: float) -> list[float]:
    async def phase() -> list[float]:
        latencies: list[float] = []
        limits = httpx.Limits(max_connections=TASKS, max_keepalive_connections=TASKS)
        async with httpx.AsyncClient(auth=auth, limits=limits, timeout=30) as client:
            await client.get(url)
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                while (started := time.perf_counter()) < deadline:
                    await client.get(url)
                    latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(worker() for _ in range(TASKS)))
        return latencies

    return asyncio.run(phase())


Phase = Callable[[MaskinportenAuth, str, float], list[float]]
CONFIGS = ("steady state", "rollover, default", "rollover, background_refresh=True")


def run(setup: Setup, results: Results, *, quick: bool = False) -> None:
    signer = SlowSigner(setup.signer._private_key, kid=setup.signer.kid)
    cycles, seconds = (1, 3.5) if quick else (4, 3.5)
    results.note(
        SECTION,
        f"signer sleeps {SIGN_DELAY * 1000:.0f} ms per signature; rollover phases use {TOKEN_LIFETIME}-s tokens; "
        f"RefreshPolicy(min_margin=0.5); {cycles} cycles of {seconds:.1f}-s phases per configuration, alternating; "
        "the emulators run in child processes, as Maskinporten would be elsewhere",
    )
    phases: list[tuple[str, Phase]] = [(f"{THREADS} threads", threads_phase), (f"{TASKS} asyncio tasks", tasks_phase)]
    client = {"client_id": setup.client_id, "orgno": ORGNO, "scope": SCOPE, "kid": signer.kid or ""}
    with (
        emulator_in_child(**client, jwk=signer.public_jwk(), token_lifetime=3600) as steady_env,
        emulator_in_child(**client, jwk=signer.public_jwk(), token_lifetime=TOKEN_LIFETIME) as rolling_env,
        loopback_server() as url,
    ):
        for label, phase in phases:
            latencies: dict[str, list[float]] = {config: [] for config in CONFIGS}
            fetched: dict[str, int] = dict.fromkeys(CONFIGS, 0)
            for _ in range(cycles):
                for config in CONFIGS:
                    events: list[TokenEvent] = []
                    auth = MaskinportenAuth(
                        client_id=setup.client_id,
                        scopes=SCOPE,
                        signer=signer,
                        environment=steady_env if config == "steady state" else rolling_env,
                        background_refresh=config.endswith("True"),
                        refresh=REFRESH,
                        on_event=events.append,
                    )
                    auth.get_token()
                    latencies[config].extend(phase(auth, url, seconds))
                    fetched[config] += sum(event.kind == "fetched" for event in events) - 1
                    auth.close()
            _report(results, label, latencies, fetched)


def _report(results: Results, label: str, latencies: dict[str, list[float]], grants: dict[str, int]) -> None:
    steady = latencies["steady state"]
    steady_p50, steady_p99 = percentile(steady, 50), percentile(steady, 99)
    results.chart_targets[CHART] = TARGET_P99
    for config, values in latencies.items():
        p50, p99, p999 = (percentile(values, q) for q in (50, 99, 99.9))
        ratio = p99 / steady_p99
        recommended = config.endswith("True")
        is_steady = config == "steady state"
        results.chart(CHART, label, config, ratio)
        results.add(
            Row(
                SECTION,
                f"{label}, {config}: p50",
                p50 * 1e3,
                "ms",
                None if is_steady else p50 / steady_p50,
                "" if is_steady else "steady p50",
            )
        )
        results.add(
            Row(
                SECTION,
                f"{label}, {config}: p99",
                p99 * 1e3,
                "ms",
                None if is_steady else ratio,
                "" if is_steady else "steady p99",
                target=f"≤ {TARGET_P99:.1f}{TIMES}" if recommended else "",
                passed=(ratio <= TARGET_P99) if recommended else None,
                note=(
                    f"{len(values)} requests, {grants[config]} refreshes; p99.9 {p999 * 1e3:.2f} ms, "
                    f"max {max(values) * 1e3:.1f} ms"
                ),
            )
        )
