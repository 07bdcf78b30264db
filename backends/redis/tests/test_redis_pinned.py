"""Behaviours of the shared store pinned through public entry points: an outage costs one timeout, not one per call.

(A lease is released by its holder only: test_redis_hostile.py holds that.)
"""

from __future__ import annotations

import signal
import time

from maskinporten_auth_redis import RedisTokenCache


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
