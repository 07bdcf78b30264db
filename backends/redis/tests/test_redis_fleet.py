"""A fleet of processes on one store: one grant per customer per lifetime, a killed lease holder, a server outage."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from typing import Any

import pytest
from maskinporten_auth_redis import RedisTokenCache, StoreEvent

from maskinporten_auth import LocalKeySigner, MaskinportenAuth, RefreshPolicy
from maskinporten_auth.testing import longest_stall

FORK = multiprocessing.get_context("fork")  # as gunicorn starts its workers: the auth object is inherited


def deadline(seconds: float) -> Any:
    """A wall-clock deadline ``seconds`` from now that the parent can move while its children run."""
    return FORK.Value("d", time.time() + seconds, lock=False)


def run_customers(auth: MaskinportenAuth, customers: list[str], until: Any) -> None:
    """Ask for every customer's token, at least once and over and over until wall-clock ``until.value``.

    Raise on any failure. The first pass runs even past the deadline: a process started late on a busy machine
    still takes part in the cold start.
    """
    views = [auth.with_consumer_org(customer) for customer in customers]
    while True:
        for view in views:
            assert view.get_token()
        if time.time() >= until.value:
            return
        time.sleep(0.05)


def worker(auth: MaskinportenAuth, customers: list[str], until: Any) -> None:
    try:
        run_customers(auth, customers, until)
    except BaseException:
        logging.getLogger(__name__).exception("a fleet worker failed")
        os._exit(1)
    os._exit(0)


def test_a_fleet_sends_the_grants_of_one_process_over_two_lifetimes(redis_fleet, redis_store):
    processes, lifetime = 4, 5
    fleet = redis_fleet(token_lifetime=lifetime, customers=10)
    alone = fleet.register()  # the same work in one process with its own cache, at the same time
    fleet_auth = fleet.auth(redis_store())
    single_auth = fleet.auth(None, client_id=alone)
    until = deadline(60)
    children = [FORK.Process(target=worker, args=(fleet_auth, fleet.customers, until)) for _ in range(processes)]
    children.append(FORK.Process(target=worker, args=(single_auth, fleet.customers, until)))
    for child in children:
        child.start()
    customers = len(fleet.customers)
    while min(fleet.grants(alone), fleet.grants()) < customers:  # the cold start, as slow as the machine makes it
        time.sleep(0.01)
    # Refreshed at 60 % of the lifetime: each customer's tokens are fetched at about 0, 3, 6 and 9 s after its first.
    # Stop halfway between the 4th and a 5th fetch, counted from the end of the cold start.
    until.value = time.time() + 3.4 * 0.6 * lifetime
    for child in children:
        child.join(timeout=4 * lifetime)
    assert [child.exitcode for child in children] == [0] * len(children)  # no token request failed
    single, shared = fleet.grants(alone), fleet.grants()
    assert single == 4 * customers
    assert shared == single, f"{processes} processes sent {shared} grants, one process {single}"


class BlockingSigner(LocalKeySigner):
    """Signs only after a minute: its process holds the lease, mid-fetch, until it is killed."""

    def sign(self, signing_input: bytes) -> bytes:
        time.sleep(60)
        return super().sign(signing_input)


def hold_lease_forever(fleet, store: RedisTokenCache) -> None:
    fleet.auth(store, signer=BlockingSigner(fleet.key, kid="fleet-key")).get_token()
    os._exit(0)


def test_a_lease_holder_killed_mid_fetch_delays_the_others_at_most_the_lease_time(redis_fleet, redis_store):
    lease_time = 1.5
    fleet = redis_fleet(customers=1)
    store = redis_store(lease_time=lease_time)
    holder = FORK.Process(target=hold_lease_forever, args=(fleet, store))
    holder.start()
    lease = store.lease_name(fleet.auth(store).cache_key)
    deadline = time.monotonic() + 10
    while not store.client.exists(lease):
        assert time.monotonic() < deadline, "the holder never took the lease"
        time.sleep(0.01)
    time.sleep(lease_time)  # the holder has renewed its lease at least once by now
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=5)
    left = store.client.pttl(lease) / 1000
    started = time.monotonic()
    token = fleet.auth(redis_store(lease_time=lease_time)).get_token()
    waited = time.monotonic() - started
    assert token
    assert 0 < left <= lease_time
    assert left - 0.1 <= waited <= left + 1.0, f"the lease had {left:.2f} s left; waited {waited:.2f} s"
    assert fleet.grants() == 1  # the killed holder's grant was never sent


def test_the_server_stopped_and_started_mid_run_fails_no_request(redis_fleet, redis_own_server, caplog):
    events: list[StoreEvent] = []
    fleet = redis_fleet(token_lifetime=3, customers=5)
    store = RedisTokenCache.from_url(
        redis_own_server.url, insecure_no_encryption=True, retry_interval=0.3, on_event=events.append
    )
    auth = fleet.auth(store)
    caplog.set_level(logging.WARNING, logger="maskinporten_auth")
    run_customers(auth, fleet.customers, deadline(1))
    redis_own_server.stop()
    run_customers(auth, fleet.customers, deadline(3))  # refreshes fall in the outage: each made locally
    assert not store.available
    redis_own_server.start()
    run_customers(auth, fleet.customers, deadline(3))
    assert [event.kind for event in events] == ["unavailable", "available"]
    warnings = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1
    # Back in use: the tokens fetched since the restart are in the server again.
    assert len(redis_own_server.dump()) == len(fleet.customers)


def test_a_stalled_server_costs_a_miss_its_timeout_and_never_blocks_an_event_loop(redis_fleet, redis_own_server):
    events: list[StoreEvent] = []
    fleet = redis_fleet(customers=2)
    store = RedisTokenCache.from_url(
        redis_own_server.url, insecure_no_encryption=True, timeout=0.2, retry_interval=60, on_event=events.append
    )
    auth = fleet.auth(store)
    first, second = (auth.with_consumer_org(customer) for customer in fleet.customers)
    assert first.get_token()
    assert redis_own_server.process is not None
    redis_own_server.process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        started = time.monotonic()
        token, stall = longest_stall(second.aget_token)
        elapsed = time.monotonic() - started
    finally:
        redis_own_server.process.send_signal(signal.SIGCONT)
    assert token and fleet.grants() == 2
    assert elapsed < 2.0  # two timed-out attempts of 0.2 s, then the fetch without the store
    assert stall < 0.1, f"the event loop was blocked for {stall:.3f} s"
    assert [event.kind for event in events] == ["unavailable"]
    assert "Timeout" in events[0].detail


def test_asyncio_callers_share_the_fleets_tokens(redis_fleet, redis_store):
    fleet = redis_fleet(customers=3)
    writer = fleet.auth(redis_store())
    tokens = [writer.with_consumer_org(customer).get_token() for customer in fleet.customers]
    reader = fleet.auth(redis_store())

    async def read_all() -> list[str]:
        return await asyncio.gather(*(reader.with_consumer_org(c).aget_token() for c in fleet.customers))

    assert asyncio.run(read_all()) == tokens
    assert fleet.grants() == len(fleet.customers)


@pytest.mark.parametrize("customers", [1, 8])
def test_a_cold_fleet_fetches_each_customer_once(redis_fleet, redis_store, customers):
    fleet = redis_fleet(customers=customers)
    auth = fleet.auth(redis_store())
    children = [FORK.Process(target=worker, args=(auth, fleet.customers, deadline(0.5))) for _ in range(6)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=30)
    assert [child.exitcode for child in children] == [0] * len(children)
    assert fleet.grants() == customers


def test_a_process_joining_after_the_refresh_point_uses_the_fleets_token(redis_store, redis_fleet):
    fleet = redis_fleet(token_lifetime=10, customers=1)
    early = RefreshPolicy(refresh_window=(0.1, 0.1))
    first = fleet.auth(redis_store(), refresh=early).with_consumer_org(fleet.customers[0])
    token_value = first.get_token()
    time.sleep(1.5)  # past the token's refresh point (1 s), far from its end (10 s)
    joining = fleet.auth(redis_store(), refresh=early).with_consumer_org(fleet.customers[0])
    assert joining.get_token() == token_value
    assert fleet.grants() == 1


def always_401_worker(auth: MaskinportenAuth, url: str, calls: int) -> None:
    import httpx

    try:
        with httpx.Client(auth=auth) as client:
            for _ in range(calls):
                assert client.get(url).status_code == 401
    except BaseException:
        logging.getLogger(__name__).exception("a fleet worker failed")
        os._exit(1)
    os._exit(0)


def test_an_api_that_always_answers_401_costs_a_fleet_at_most_two_grants(redis_fleet, redis_store):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Unauthorized(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    fleet = redis_fleet(token_lifetime=120, customers=1)
    auth = fleet.auth(redis_store()).with_consumer_org(fleet.customers[0])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        auth.get_token()  # the first grant, shared by the fleet through the store
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        children = [FORK.Process(target=always_401_worker, args=(auth, url, 20)) for _ in range(4)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert [child.exitcode for child in children] == [0] * 4
    assert fleet.grants() == 2, "the renewal that the API rejected too must end renewal across the fleet"
