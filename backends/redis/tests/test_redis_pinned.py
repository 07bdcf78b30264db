"""Behaviours of the shared store pinned through public entry points: a lease is released by its holder only, and
an outage costs one timeout, not one per call."""

from __future__ import annotations

import contextlib
import signal
import time

from maskinporten_auth_redis import RedisTokenCache

KEY = "pinned-key"


def test_a_holder_whose_lease_expired_does_not_release_the_next_holders_lease(redis_store, redis_server):
    first, second = redis_store(lease_time=5), redis_store(lease_time=5)
    client = redis_server.client()
    name = first.lease_name(KEY)
    with contextlib.ExitStack() as first_holds, contextlib.ExitStack() as second_holds:
        first_holds.enter_context(first.fetching(KEY, timeout=1))
        client.delete(name)  # as if it expired while its holder was stalled
        second_holds.enter_context(second.fetching(KEY, timeout=1))
        taken = client.get(name)
        assert taken is not None
        first_holds.close()  # the first holder ends its fetch...
        assert client.get(name) == taken  # ...and leaves the second's lease alone
    assert client.exists(name) == 0  # the second releases its own


def test_token_calls_during_an_outage_do_not_each_wait_for_the_stores_timeout(redis_fleet, redis_own_server):
    fleet = redis_fleet(customers=10)
    timeout = 0.5
    store = RedisTokenCache.from_url(
        redis_own_server.url, insecure_no_encryption=True, timeout=timeout, retry_interval=60
    )
    auth = fleet.auth(store)
    assert redis_own_server.process is not None
    redis_own_server.process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        started = time.monotonic()
        assert auth.with_consumer_org(fleet.customers[0]).get_token()
        first = time.monotonic() - started
        started = time.monotonic()
        for customer in fleet.customers[1:]:
            assert auth.with_consumer_org(customer).get_token()
        rest = time.monotonic() - started
    finally:
        redis_own_server.process.send_signal(signal.SIGCONT)
        store.close()
    assert first >= timeout  # the first call found the store unavailable...
    assert rest < 9 * timeout, f"nine token calls during the outage took {rest:.2f} s"  # ...the others did not wait
    assert fleet.grants() == 10
