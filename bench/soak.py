"""The soak run of ``nox -s soak``: short-lived tokens, threads and asyncio tasks, faults at the token endpoint.

The emulator issues 3-second tokens; worker threads (httpx.Client) and asyncio tasks (httpx.AsyncClient) call a
ProtectedApi through one MaskinportenAuth for the whole run, while about 5 % of the token requests are spoiled
(5xx, 429 with Retry-After, slow answers, dropped and reset connections, broken bodies). The run fails if

- a request failed for authentication (no token, or a final 401) while the token the auth held when the request
  began could still be sent by the library's own rule (``RefreshPolicy.usable``: until ``min_margin`` before its
  estimated expiry, or half its lifetime for a token as short as these),
- a grant was sent twice (the emulator saw a jti again), or
- far more grants were made than the ideal count (a refresh storm).

It reports the grants made against the ideal count (run time / mean refresh interval) and the request counts.

    python bench/soak.py                 # 3 minutes
    python bench/soak.py --seconds 20    # shorter
    nox -s soak -- --seconds 20

The core's test suite loads this file and runs a twelve-second soak with many faults (tests/test_soak.py), so this
logic runs with it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth import LocalKeySigner, MaskinportenAuth
from maskinporten_auth.cache import CachedToken, RefreshPolicy
from maskinporten_auth.errors import MaskinportenError
from maskinporten_auth.testing import Fault, MaskinportenEmulator
from maskinporten_auth.testing.protected_api import ProtectedApi

SCOPE = "nav:oppfolgingsplan/lps.write"
SUPPLIER = "313042995"
NO_FAULT = Fault()
#: The faults drawn from, equally likely; each spoils one token request.
FAULTS = (
    Fault.server_error(500),
    Fault.server_error(502),
    Fault.server_error(503),
    Fault.server_error(504),
    Fault.rate_limited(),
    Fault.rate_limited(retry_after=1),
    Fault.slow(1.0),
    Fault.dropped_connection(),
    Fault.reset_connection(),
    Fault.malformed_json(),
    Fault.html_error_page(),
    Fault.missing_access_token(),
    Fault.invalid_expires_in(),
)
#: A refresh storm: more grants than this many times the ideal count (plus a few for start-up and faults).
STORM_FACTOR = 2.0


@dataclass(frozen=True)
class SoakConfig:
    """How long and how hard to soak."""

    seconds: float = 180.0
    token_lifetime: int = 3
    threads: int = 4
    tasks: int = 8
    fault_rate: float = 0.05
    pause: float = 0.02
    seed: int | None = None


@dataclass
class Outcomes:
    """What the workers saw: each request's outcome, judged against the token the auth held when it began."""

    auth: MaskinportenAuth
    refresh: RefreshPolicy
    requests: int = 0
    ok: int = 0
    auth_failures: int = 0
    auth_failures_with_valid_token: int = 0
    other_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def held(self) -> CachedToken | None:
        """The token the auth holds now (read as a request begins)."""
        return self.auth.cache.get(self.auth.cache_key)

    def record(self, status: int | None, error: Exception | None, held: CachedToken | None) -> None:
        """Count one request by its HTTP status, or the error it raised; ``held`` is what :meth:`held` said before it.

        A failure counts against the library when ``held`` could still be sent by the library's own rule: the
        fallback of every failed fetch is that token while it is usable.
        """
        usable = held is not None and self.refresh.usable(held, time.monotonic())
        with self.lock:
            self.requests += 1
            if status is not None and status < 400:
                self.ok += 1
            elif status == 401 or isinstance(error, MaskinportenError):
                self.auth_failures += 1
                if usable:
                    self.auth_failures_with_valid_token += 1
            else:
                self.other_failures += 1


@dataclass(frozen=True)
class SoakReport:
    """The numbers of one soak run."""

    seconds: float
    requests: int
    ok: int
    auth_failures: int
    auth_failures_with_valid_token: int
    other_failures: int
    grants: int
    tokens_issued: int
    faults_injected: int
    api_rejections: int
    reused_jtis: list[str]
    ideal_grants: float

    @property
    def storm_limit(self) -> float:
        """The most grants that are not a refresh storm."""
        return STORM_FACTOR * self.ideal_grants + 10

    @property
    def problems(self) -> list[str]:
        """Why the run failed; empty when it passed."""
        problems = []
        if self.auth_failures_with_valid_token:
            problems.append(f"{self.auth_failures_with_valid_token} requests failed for auth while a token was valid")
        if self.reused_jtis:
            problems.append(f"{len(self.reused_jtis)} grants were sent twice")
        if self.grants > self.storm_limit:
            problems.append(f"{self.grants} grants is a refresh storm (limit {self.storm_limit:.0f})")
        if self.requests == 0:
            problems.append("no request was made")
        return problems

    def summary(self) -> str:
        """A human-readable report."""
        lines = [
            f"soak: {self.seconds:.0f} s",
            f"requests: {self.requests} ({self.ok} ok, {self.auth_failures} failed for auth, of which "
            f"{self.auth_failures_with_valid_token} while a token was valid; {self.other_failures} other failures)",
            f"API rejections (401, recovered by refresh-and-resend or not): {self.api_rejections}",
            f"grants: {self.grants} made, {self.tokens_issued} tokens issued, {self.faults_injected} faults injected",
            f"ideal: {self.ideal_grants:.1f} grants (run time / mean refresh interval); "
            f"tokens issued / ideal = {self.tokens_issued / self.ideal_grants:.2f}",
            f"reused jtis: {len(self.reused_jtis)}",
            "PASSED" if not self.problems else "FAILED: " + "; ".join(self.problems),
        ]
        return "\n".join(lines)


def _queue_faults(emulator: MaskinportenEmulator, config: SoakConfig, rng: random.Random, count: int) -> None:
    """Queue one entry per expected token request: a real fault with probability ``fault_rate``, else none."""
    for _ in range(count):
        fault = rng.choice(FAULTS) if rng.random() < config.fault_rate else NO_FAULT
        emulator.inject_fault(fault)


def _thread_worker(auth: MaskinportenAuth, url: str, stop: float, pause: float, outcomes: Outcomes) -> None:
    with httpx.Client(auth=auth, timeout=30) as client:
        while time.monotonic() < stop:
            held = outcomes.held()
            try:
                outcomes.record(client.get(url).status_code, None, held)
            except (MaskinportenError, httpx.HTTPError) as exc:
                outcomes.record(None, exc, held)
            time.sleep(pause)


async def _task_worker(client: httpx.AsyncClient, url: str, stop: float, pause: float, outcomes: Outcomes) -> None:
    while time.monotonic() < stop:
        held = outcomes.held()
        try:
            outcomes.record((await client.get(url)).status_code, None, held)
        except (MaskinportenError, httpx.HTTPError) as exc:
            outcomes.record(None, exc, held)
        await asyncio.sleep(pause)


async def _tasks(auth: MaskinportenAuth, url: str, stop: float, config: SoakConfig, outcomes: Outcomes) -> None:
    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
        await asyncio.gather(*(_task_worker(client, url, stop, config.pause, outcomes) for _ in range(config.tasks)))


def run_soak(config: SoakConfig) -> SoakReport:
    """Run one soak and return its report."""
    rng = random.Random(config.seed)  # a reproducible fault sequence, not cryptography
    refresh = RefreshPolicy()
    refresh_interval = config.token_lifetime * sum(refresh.refresh_window) / 2
    ideal_grants = config.seconds / refresh_interval
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = LocalKeySigner(key, kid="soak")
    with MaskinportenEmulator(token_lifetime=config.token_lifetime) as emulator:
        client_id = str(uuid.uuid4())
        emulator.register_client(client_id, orgno=SUPPLIER, scopes=[SCOPE], keys={"soak": key.public_key()})
        _queue_faults(emulator, config, rng, count=int(4 * ideal_grants) + 50)
        auth = MaskinportenAuth(client_id, SCOPE, signer, emulator.environment, refresh=refresh)
        outcomes = Outcomes(auth, refresh)
        with ProtectedApi(lambda: emulator.jwks, issuer=emulator.issuer, scope=SCOPE) as api, auth:
            url = f"{api.url}/soak"
            started = time.monotonic()
            stop = started + config.seconds
            workers = [
                threading.Thread(target=_thread_worker, args=(auth, url, stop, config.pause, outcomes))
                for _ in range(config.threads)
            ]
            workers.append(threading.Thread(target=asyncio.run, args=(_tasks(auth, url, stop, config, outcomes),)))
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.monotonic() - started
            api_rejections = sum(1 for call in api.calls if call.status == 401)
        records = emulator.grants
        return SoakReport(
            seconds=elapsed,
            requests=outcomes.requests,
            ok=outcomes.ok,
            auth_failures=outcomes.auth_failures,
            auth_failures_with_valid_token=outcomes.auth_failures_with_valid_token,
            other_failures=outcomes.other_failures,
            grants=len(records),
            tokens_issued=emulator.tokens_issued,
            faults_injected=sum(1 for record in records if record.fault not in (None, NO_FAULT)),
            api_rejections=api_rejections,
            reused_jtis=emulator.reused_jtis,
            ideal_grants=elapsed / refresh_interval,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak from the command line; exit status 1 when it fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    defaults = SoakConfig()
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="how long to run (default 180)")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="worker threads (default 4)")
    parser.add_argument("--tasks", type=int, default=defaults.tasks, help="asyncio tasks (default 8)")
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate, help="share of token requests spoiled")
    parser.add_argument("--token-lifetime", type=int, default=defaults.token_lifetime, help="seconds (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the fault sequence")
    args = parser.parse_args(argv)
    config = SoakConfig(
        seconds=args.seconds,
        token_lifetime=args.token_lifetime,
        threads=args.threads,
        tasks=args.tasks,
        fault_rate=args.fault_rate,
        seed=args.seed,
    )
    report = run_soak(config)
    print(report.summary())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
