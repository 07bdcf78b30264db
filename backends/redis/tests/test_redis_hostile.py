"""What another party with write access to the server can do: replayed, foreign and wrong-type entries, planted
leases. None of it is served, none of it stops the fleet from sharing, and none of it stalls a fetch. Also: leases
are renewed and released by their owner only, an outage costs one timeout, and the renewal time is shared."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time

import pytest
from maskinporten_auth_redis import RedisTokenCache, StoreEvent

from maskinporten_auth.cache import CachedToken

from .test_redis_store import KEY, OTHER_KEY, token

DAY_MS = 86_400_000


def unavailable_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]


# Replayed and foreign entries


def test_a_replayed_expired_entry_with_a_long_ttl_does_not_block_sharing(redis_store, redis_server):
    events: list[StoreEvent] = []
    writer, reader = redis_store(on_event=events.append), redis_store()
    client = redis_server.client()
    writer.put(KEY, token("eyJ.old.genuine", lifetime=0.3))
    replayed = client.get(writer.entry_name(KEY))
    time.sleep(0.4)  # the genuine entry has expired: the server dropped it with its token
    client.set(writer.entry_name(KEY), replayed, px=DAY_MS)  # and someone puts it back for a day

    writer.put(KEY, token("eyJ.new"))
    loaded = reader.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.new"
    assert 59_000 < client.pttl(writer.entry_name(KEY)) <= 60_000  # the new entry's own time to live
    assert [event.kind for event in events] == ["entry_rejected"]
    assert "expired" in events[0].detail


def test_a_replayed_expired_entry_is_removed_and_reported_when_read(redis_store, redis_server):
    events: list[StoreEvent] = []
    writer, reader = redis_store(), redis_store(on_event=events.append)
    client = redis_server.client()
    writer.put(KEY, token("eyJ.old.genuine", lifetime=0.3))
    replayed = client.get(writer.entry_name(KEY))
    time.sleep(0.4)
    client.set(writer.entry_name(KEY), replayed, px=DAY_MS)
    assert reader.load(KEY) is None
    assert client.exists(writer.entry_name(KEY)) == 0
    assert [event.kind for event in events] == ["entry_rejected"]


@pytest.mark.parametrize("blob", [b"\x01" + bytes(range(64)), b"", b"not ours at all"], ids=["sealed", "empty", "text"])
def test_a_foreign_entry_with_a_long_ttl_does_not_block_a_write(redis_store, redis_server, blob):
    events: list[StoreEvent] = []
    writer, reader = redis_store(on_event=events.append), redis_store()
    client = redis_server.client()
    client.set(writer.entry_name(KEY), blob, px=DAY_MS)
    writer.put(KEY, token("eyJ.ours"))
    loaded = reader.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.ours"
    assert [event.kind for event in events] == ["entry_rejected"]


def test_a_longer_lived_genuine_entry_still_wins_by_its_sealed_expiry(redis_store, redis_server):
    first, second, reader = redis_store(), redis_store(), redis_store()
    client = redis_server.client()
    first.put(KEY, token("eyJ.long.lived", lifetime=120))
    client.pexpire(first.entry_name(KEY), 1_000)  # a short server TTL says nothing about the token
    second.put(KEY, token("eyJ.short.lived", lifetime=60))
    loaded = reader.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.long.lived"


# Values of the wrong type


def test_a_value_of_the_wrong_type_under_an_entry_is_a_bad_entry_not_an_outage(redis_store, redis_server, caplog):
    events: list[StoreEvent] = []
    store, other = redis_store(on_event=events.append), redis_store()
    client = redis_server.client()
    caplog.set_level(logging.WARNING, logger="maskinporten_auth")
    client.rpush(store.entry_name(KEY), "not", "a", "token")
    assert store.load(KEY) is None
    assert client.exists(store.entry_name(KEY)) == 0
    assert [event.kind for event in events] == ["entry_rejected"]
    assert "type" in events[0].detail
    assert store.available and not unavailable_warnings(caplog)
    client.set(store.entry_name(KEY), b"a string")
    store._delete_if_not_string(keys=[store.entry_name(KEY)])  # what removes it spares a string put there since
    assert client.get(store.entry_name(KEY)) == b"a string"
    # Sharing goes on for every customer, this one included.
    for key in (KEY, OTHER_KEY):
        store.put(key, token(f"eyJ.{key[0]}"))
        loaded = other.load(key)
        assert loaded is not None and loaded.value == f"eyJ.{key[0]}"


def test_a_value_of_the_wrong_type_planted_before_a_write_is_replaced(redis_store, redis_server, caplog):
    events: list[StoreEvent] = []
    store, other = redis_store(on_event=events.append), redis_store()
    client = redis_server.client()
    caplog.set_level(logging.WARNING, logger="maskinporten_auth")
    client.hset(store.entry_name(KEY), "token", "eyJ.forged")
    store.put(KEY, token("eyJ.ours"))
    loaded = other.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.ours"
    assert [event.kind for event in events] == ["entry_rejected"]
    assert store.available and not unavailable_warnings(caplog)


def test_a_value_of_the_wrong_type_under_a_lease_is_removed_and_the_lease_taken(redis_store, redis_server, caplog):
    events: list[StoreEvent] = []
    store = redis_store(on_event=events.append, lease_time=5)
    client = redis_server.client()
    caplog.set_level(logging.WARNING, logger="maskinporten_auth")
    client.sadd(store.lease_name(KEY), "planted")
    started = time.monotonic()
    with store.fetching(KEY, timeout=10):
        assert time.monotonic() - started < 1.0
        assert client.type(store.lease_name(KEY)) == b"string"
        assert store.lease_name(KEY) in store._leases  # held by this process
    assert client.exists(store.lease_name(KEY)) == 0
    assert [event.kind for event in events] == ["entry_rejected"]
    assert store.available and not unavailable_warnings(caplog)


# Leases


@pytest.mark.parametrize("ttl_ms", [None, DAY_MS], ids=["no TTL", "a day"])
def test_a_planted_lease_stalls_a_fetch_at_most_the_lease_time(redis_store, redis_server, ttl_ms):
    store = redis_store(lease_time=1)
    client = redis_server.client()
    client.set(store.lease_name(KEY), "planted", px=ttl_ms)
    started = time.monotonic()
    with store.fetching(KEY, timeout=20):
        waited = time.monotonic() - started
        # Nobody renewed it for lease_time: abandoned. This process took it over and holds it while it fetches.
        assert client.get(store.lease_name(KEY)) != b"planted"
        assert store.lease_name(KEY) in store._leases
    assert 0.9 <= waited <= 2.0
    assert client.exists(store.lease_name(KEY)) == 0


def test_a_planted_lease_delays_a_token_at_most_the_lease_time(redis_fleet, redis_store, redis_server):
    fleet = redis_fleet(customers=1)
    store = redis_store(lease_time=1)
    auth = fleet.auth(store)
    redis_server.client().set(store.lease_name(auth.cache_key), "planted")
    started = time.monotonic()
    assert auth.get_token()
    assert time.monotonic() - started < 2.0  # the provider's patience is a minute
    assert fleet.grants() == 1


def test_a_waiter_does_not_rob_a_holder_that_renews_its_lease(redis_store, redis_server):
    holder, waiter = redis_store(lease_time=0.6), redis_store(lease_time=0.6)
    client = redis_server.client()
    name = holder.lease_name(KEY)
    entered, done = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.fetching(KEY, timeout=5):
            entered.set()
            done.wait(5)  # a slow fetch: longer than the waiter's lease_time

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert entered.wait(5)
        owner = holder._leases[name]
        started = time.monotonic()
        with waiter.fetching(KEY, timeout=10):
            waited = time.monotonic() - started
            held = client.get(name)
            assert name not in waiter._leases  # fetches without the lease...
            assert held is not None and held.decode().startswith(owner)  # ...and the holder still has it
        assert 0.5 <= waited <= 1.5
        time.sleep(0.5)
        renewed = client.get(name)
        assert renewed is not None and renewed.decode().startswith(owner) and renewed != held
    finally:
        done.set()
        thread.join()
    assert client.exists(name) == 0


def test_a_holder_whose_lease_expired_neither_renews_nor_releases_the_next_holders(redis_store, redis_server):
    first, second = redis_store(lease_time=5), redis_store(lease_time=5)
    client = redis_server.client()
    name = first.lease_name(KEY)
    with contextlib.ExitStack() as first_holds, contextlib.ExitStack() as second_holds:
        first_holds.enter_context(first.fetching(KEY, timeout=1))
        client.delete(name)  # as if it expired while its holder was stalled
        second_holds.enter_context(second.fetching(KEY, timeout=1))
        taken = client.get(name)
        assert taken is not None and taken.decode().startswith(second._leases[name])
        assert first._renew_held()  # the first holder still believes it holds its lease...
        assert client.get(name) == taken  # ...but its renewal leaves the second's alone
        first_holds.close()  # and so does its release
        assert client.get(name) == taken
        assert second._renew_held()
        renewed = client.get(name)
        assert renewed is not None and renewed != taken and renewed.decode().startswith(second._leases[name])
    assert client.exists(name) == 0


# Outages


def test_calls_during_an_outage_do_not_each_wait_for_the_timeout(redis_own_server):
    events: list[StoreEvent] = []
    store = RedisTokenCache.from_url(
        redis_own_server.url, insecure_no_encryption=True, timeout=0.2, retry_interval=60, on_event=events.append
    )
    store.put(KEY, token())
    assert redis_own_server.process is not None
    redis_own_server.process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        store._local.clear()
        started = time.monotonic()
        assert store.load(KEY) is None
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(20):
            assert store.load(KEY) is None
            store.put(OTHER_KEY, token())
            with store.fetching(KEY, timeout=5):
                pass
        rest = time.monotonic() - started
    finally:
        redis_own_server.process.send_signal(signal.SIGCONT)
    assert 0.2 <= first < 1.0  # one call waited for the timeout (and its one retry)...
    assert rest < 0.5, f"60 calls during the outage took {rest:.2f} s"  # ...the others did not wait at all
    assert [event.kind for event in events] == ["unavailable"]


# renewed_at


def test_renewed_at_is_shared(redis_store):
    writer, reader = redis_store(), redis_store()
    renewed = token()
    renewed = CachedToken(
        renewed.value, renewed.expires_at, renewed.refresh_at, renewed.must_refresh_at, time.monotonic() - 5
    )
    writer.put(KEY, renewed)
    loaded = reader.load(KEY)
    assert loaded is not None and loaded.renewed_at is not None
    assert loaded.renewed_at == pytest.approx(renewed.renewed_at, abs=0.05)
    writer.put(OTHER_KEY, token())
    plain = reader.load(OTHER_KEY)
    assert plain is not None and plain.renewed_at is None


def plain_entry(**fields: object) -> bytes:
    now = time.time()
    document = {"token": "eyJ.a", "refresh_at": now + 30, "must_refresh_at": now + 50, "expires_at": now + 60}
    return b"\x00" + json.dumps({**document, **fields}).encode()


def test_an_entry_without_renewed_at_opens_as_never_renewed(redis_store, redis_server):
    store = redis_store(encryption_key=None, insecure_no_encryption=True)
    redis_server.client().set(store.entry_name(KEY), plain_entry(), px=60_000)  # as an earlier version wrote it
    loaded = store.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.a" and loaded.renewed_at is None


@pytest.mark.parametrize(
    "renewed_at",
    ["1700000000", True, float("nan"), float("inf"), "in the future", [1]],
)
def test_a_renewed_at_that_is_not_a_past_moment_is_refused(redis_store, redis_server, renewed_at):
    events: list[StoreEvent] = []
    store = redis_store(encryption_key=None, insecure_no_encryption=True, on_event=events.append)
    if renewed_at == "in the future":
        renewed_at = time.time() + 3600
    blob = plain_entry(renewed_at=renewed_at)
    redis_server.client().set(store.entry_name(KEY), blob, px=60_000)
    assert store.load(KEY) is None
    assert [event.kind for event in events] == ["entry_rejected"]
