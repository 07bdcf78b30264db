"""RedisTokenCache against a real server: two levels, sealing, names, leases, garbage, construction."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

import pytest
import redis
import redis.asyncio
from maskinporten_auth_redis import RedisTokenCache, StoreEvent, new_encryption_key

from maskinporten_auth import ConfigurationError
from maskinporten_auth.cache import CachedToken

KEY = "a" * 64  # cache keys are sha256 hex digests
OTHER_KEY = "b" * 64


def token(value: str = "eyJ.header.payload", lifetime: float = 60.0, refresh: float = 0.6) -> CachedToken:
    now = time.monotonic()
    return CachedToken(
        value=value,
        expires_at=now + lifetime,
        refresh_at=now + lifetime * refresh,
        must_refresh_at=now + lifetime * 0.9,
    )


def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hot path touched the network")

    monkeypatch.setattr(redis.Redis, "execute_command", refuse)


# Two levels


def test_a_token_put_by_one_process_is_loaded_by_another_with_its_schedule(redis_store):
    writer, reader = redis_store(), redis_store()
    stored = token()
    writer.put(KEY, stored)
    assert reader.get(KEY) is None  # the hot path never asks the server
    loaded = reader.load(KEY)
    assert loaded is not None and loaded.value == stored.value
    for field in ("expires_at", "refresh_at", "must_refresh_at"):
        assert getattr(loaded, field) == pytest.approx(getattr(stored, field), abs=0.05)
    assert reader.get(KEY) == loaded  # kept in memory for the hot path


def test_a_cache_hit_never_touches_the_network(redis_store, redis_fleet, monkeypatch):
    fleet = redis_fleet(customers=1)
    auth = fleet.auth(redis_store()).with_consumer_org(fleet.customers[0])
    token_value = auth.get_token()
    no_network(monkeypatch)
    assert [auth.get_token() for _ in range(100)] == [token_value] * 100
    assert auth.cache.get(OTHER_KEY) is None  # a local miss answers from memory too


def test_an_entry_expires_with_its_token(redis_store, redis_server):
    store = redis_store()
    store.put(KEY, token(lifetime=30))
    ttl_ms = redis_server.client().pttl(store.entry_name(KEY))
    assert 29_000 < ttl_ms <= 30_000


def test_a_longer_lived_entry_is_not_replaced_by_a_shorter_one(redis_store):
    first, second, reader = redis_store(), redis_store(), redis_store()
    first.put(KEY, token("eyJ.long.lived", lifetime=120))
    second.put(KEY, token("eyJ.short.lived", lifetime=60))
    loaded = reader.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.long.lived"


def test_load_keeps_the_local_token_when_it_outlives_the_servers(redis_store):
    store, other = redis_store(), redis_store()
    other.put(KEY, token("eyJ.shared.old", lifetime=30))
    store._local.put(KEY, token("eyJ.local.newer", lifetime=90))
    loaded = store.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.local.newer"


def test_a_token_the_api_rejected_is_not_loaded_back_and_leaves_the_server(redis_store, redis_server, monkeypatch):
    store, other = redis_store(), redis_store()
    store.put(KEY, token("eyJ.rejected"))
    with monkeypatch.context() as patched:
        no_network(patched)  # invalidate may run on an event loop: no I/O
        assert store.invalidate(KEY, "eyJ.rejected") is True
    assert store.load(KEY) is None
    assert redis_server.client().exists(store.entry_name(KEY)) == 0
    other.put(KEY, token("eyJ.replacement"))
    loaded = store.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.replacement"


def test_clear_forgets_this_keys_tokens_and_leaves_other_namespaces(redis_store, redis_server):
    store, neighbour = redis_store(), redis_store(namespace="payroll")
    store.put(KEY, token())
    neighbour.put(KEY, token())
    store.clear()
    assert store.get(KEY) is None and store.load(KEY) is None
    assert redis_server.client().exists(neighbour.entry_name(KEY)) == 1


# Names and sealing


def test_entry_names_are_keyed_digests_apart_by_namespace_and_key(redis_store, redis_key):
    store = redis_store()
    names = {
        store.entry_name(KEY),
        store.entry_name(OTHER_KEY),
        redis_store(namespace="other-env").entry_name(KEY),
        redis_store(encryption_key=new_encryption_key()).entry_name(KEY),
        store.lease_name(KEY),
    }
    assert len(names) == 5
    assert KEY not in store.entry_name(KEY)  # not the cache key itself, which a dictionary attack could test
    assert redis_store().entry_name(KEY) == store.entry_name(KEY)  # the same for every process with the key


def test_an_entry_read_with_the_wrong_encryption_key_is_a_miss(redis_store, redis_server):
    writer = redis_store()
    reader = redis_store(encryption_key=new_encryption_key())
    writer.put(KEY, token())
    assert reader.load(KEY) is None
    # Even under the name the other key reads, the sealed value does not open: a miss, not a crash.
    client = redis_server.client()
    client.set(reader.entry_name(KEY), client.get(writer.entry_name(KEY)), px=60_000)
    assert reader.load(KEY) is None
    assert client.exists(reader.entry_name(KEY)) == 0


def sealed_variants(store: RedisTokenCache, redis_server) -> dict[str, bytes]:
    store.put(KEY, token())
    store.put(OTHER_KEY, token())
    client = redis_server.client()
    good = client.get(store.entry_name(KEY))
    flipped = bytearray(good)
    flipped[20] ^= 0x01
    return {
        "random bytes": b"\x01" + bytes(range(64)),
        "truncated": good[:20],
        "one bit flipped": bytes(flipped),
        "empty": b"",
        "forged JSON in clear": b"\x00" + json.dumps({"token": "eyJ.forged", "expires_at": 2e9}).encode(),
        "another key's entry": client.get(store.entry_name(OTHER_KEY)),
    }


def test_corrupted_and_foreign_entries_are_ignored_removed_and_reported_once(redis_store, redis_server, caplog):
    events: list[StoreEvent] = []
    store = redis_store(on_event=events.append)
    client = redis_server.client()
    variants = sealed_variants(store, redis_server)
    caplog.set_level(logging.WARNING, logger="maskinporten_auth")
    for label, blob in variants.items():
        store._local.clear()
        client.set(store.entry_name(KEY), blob, px=60_000)
        assert store.load(KEY) is None, label
        assert client.exists(store.entry_name(KEY)) == 0, label
    assert [event.kind for event in events] == ["entry_rejected"] * len(variants)
    assert len([r for r in caplog.records if "ignored and removed" in r.getMessage()]) == 1
    assert store.available  # garbage is not an outage


def test_an_insecure_store_does_not_trust_a_plain_entry_that_is_not_a_token(redis_store, redis_server):
    store = redis_store(encryption_key=None, insecure_no_encryption=True)
    client = redis_server.client()
    now = time.time()
    forged = {
        "not JSON": b"\x00{",
        "a header injection": b"\x00"
        + json.dumps({"token": "x\r\nX: y", "refresh_at": now, "must_refresh_at": now, "expires_at": now + 9}).encode(),
        "times out of order": b"\x00"
        + json.dumps({"token": "eyJ.a", "refresh_at": now + 9, "must_refresh_at": now, "expires_at": now}).encode(),
        "a year ahead": b"\x00"
        + json.dumps({"token": "eyJ.a", "refresh_at": now, "must_refresh_at": now, "expires_at": now + 3e7}).encode(),
    }
    for label, blob in forged.items():
        client.set(store.entry_name(KEY), blob, px=60_000)
        assert store.load(KEY) is None, label
    store.put(KEY, token("eyJ.in.clear"))
    assert b"eyJ.in.clear" in client.get(store.entry_name(KEY))  # what the opt-out's name warns about


# Leases


def test_one_holder_at_a_time_and_only_the_owner_releases(redis_store, redis_server):
    first, second = redis_store(lease_time=5), redis_store(lease_time=5)
    client = redis_server.client()
    with first.fetching(KEY, timeout=5):
        lease = client.get(first.lease_name(KEY))
        assert lease is not None and 4000 < client.pttl(first.lease_name(KEY)) <= 5000
        started = time.monotonic()
        with second.fetching(KEY, timeout=0.3):  # cannot take it: gives up after its timeout, without a lease
            assert client.get(first.lease_name(KEY)) == lease
        assert time.monotonic() - started >= 0.3
        assert client.get(first.lease_name(KEY)) == lease  # the waiter's exit did not release it
    assert client.exists(first.lease_name(KEY)) == 0


def test_a_waiter_returns_as_soon_as_the_holders_token_is_in(redis_store):
    holder, waiter = redis_store(), redis_store()
    entered = threading.Event()

    def hold() -> None:
        with holder.fetching(KEY, timeout=5):
            entered.set()
            time.sleep(0.3)
            holder.put(KEY, token("eyJ.from.holder"))
            time.sleep(2)  # still holding: the waiter must not wait for the release

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(5)
    started = time.monotonic()
    with waiter.fetching(KEY, timeout=10):
        waited = time.monotonic() - started
    thread.join()
    assert 0.2 < waited < 1.0
    loaded = waiter.get(KEY)
    assert loaded is not None and loaded.value == "eyJ.from.holder"


def test_a_lease_is_renewed_while_held_and_expires_when_its_holder_stops(redis_store, redis_server):
    store = redis_store(lease_time=0.6)
    client = redis_server.client()
    with store.fetching(KEY, timeout=1):
        time.sleep(1.5)  # longer than the lease: only renewal keeps it
        assert client.exists(store.lease_name(KEY)) == 1
        store._leases.clear()  # as if the holder died: nobody renews it any more
        time.sleep(1.5)
        assert client.exists(store.lease_name(KEY)) == 0


# Construction


def test_without_an_encryption_key_construction_fails_naming_it(redis_server):
    with pytest.raises(ConfigurationError) as caught:
        RedisTokenCache.from_url(redis_server.url)
    assert caught.value.field == "encryption_key"
    assert "MASKINPORTEN_CACHE_KEY" in str(caught.value) and "insecure_no_encryption" in str(caught.value)


@pytest.mark.parametrize(
    "bad",
    [b"short-key-bytes", base64.b64encode(b"x" * 31).decode(), "not base64 at all!", 12345],
)
def test_a_bad_encryption_key_fails_without_repeating_it(redis_server, bad):
    with pytest.raises(ConfigurationError) as caught:
        RedisTokenCache.from_url(redis_server.url, encryption_key=bad)
    assert caught.value.field == "encryption_key"
    assert (bad.decode() if isinstance(bad, bytes) else str(bad)) not in str(caught.value)


def test_a_key_is_accepted_as_raw_bytes_standard_or_url_safe_base64(redis_store):
    raw = bytes(range(32))
    names = {
        redis_store(encryption_key=form).entry_name(KEY)
        for form in (raw, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).rstrip(b"=").decode())
    }
    assert len(names) == 1


def test_an_asyncio_client_is_refused_with_the_reason(redis_server, redis_key):
    client = redis.asyncio.Redis.from_url(redis_server.url)
    with pytest.raises(ConfigurationError) as caught:
        RedisTokenCache(client, encryption_key=redis_key)
    assert caught.value.field == "client"
    assert "event loop" in caught.value.problem and "from_url" in caught.value.problem


def test_a_given_sync_client_is_used(redis_server, redis_key):
    client = redis.Redis.from_url(redis_server.url)
    store = RedisTokenCache(client, encryption_key=redis_key)
    store.put(KEY, token())
    assert client.exists(store.entry_name(KEY)) == 1


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "memcached://x", "redis://app:pw-secret@host:no-port/0"]
)
def test_only_valid_redis_urls_are_accepted_and_the_error_hides_the_password(url, redis_key):
    with pytest.raises(ConfigurationError) as caught:
        RedisTokenCache.from_url(url, encryption_key=redis_key)
    assert caught.value.field == "url"
    assert "pw-secret" not in str(caught.value)


def test_the_repr_shows_where_and_how_but_no_password_or_key(redis_key):
    store = RedisTokenCache.from_url("redis://app:s3cret-pw@127.0.0.1:1/2", encryption_key=redis_key)
    text = repr(store)
    assert "127.0.0.1:1/2" in text and "encrypted" in text
    assert "s3cret-pw" not in text and redis_key not in text
    plain = RedisTokenCache.from_url("redis://127.0.0.1:1", insecure_no_encryption=True)
    assert "NOT ENCRYPTED" in repr(plain)


def test_a_client_that_decodes_responses_is_refused(redis_server, redis_key):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with pytest.raises(ConfigurationError) as caught:
        RedisTokenCache(client, encryption_key=redis_key)
    assert caught.value.field == "client" and "decode_responses" in caught.value.problem


def test_an_auth_on_a_shared_store_says_so_in_its_repr(redis_fleet, redis_store):
    fleet = redis_fleet(customers=1)
    shared, own = fleet.auth(redis_store()), fleet.auth(None)
    assert "cache=RedisTokenCache(" in repr(shared) and "encrypted" in repr(shared)
    assert "cache=" not in repr(own)  # the default in-process cache is not worth a mention
