"""MASKINPORTEN_CACHE_URL, _KEY and _KEY_FILE in from_env, and no secret in the server, a log line or a repr."""

from __future__ import annotations

import base64
import logging
import os

import pytest
from maskinporten_auth_redis import RedisTokenCache

from maskinporten_auth import ConfigurationError, MaskinportenAuth
from maskinporten_auth.config import EnvConfig

from .conftest import SCOPE


def cache_from(environ: dict[str, str]) -> object:
    return EnvConfig(environ=environ).cache()


def test_without_a_cache_url_there_is_no_shared_store():
    assert cache_from({}) is None


def test_the_url_and_a_base64_key_give_a_redis_store(redis_server, redis_key):
    store = cache_from({"MASKINPORTEN_CACHE_URL": redis_server.url, "MASKINPORTEN_CACHE_KEY": redis_key})
    assert isinstance(store, RedisTokenCache) and store.encrypted
    reference = RedisTokenCache.from_url(redis_server.url, encryption_key=redis_key)
    assert store.entry_name("k" * 64) == reference.entry_name("k" * 64)


@pytest.mark.parametrize("form", ["raw", "base64 with a newline"])
def test_a_key_file_holds_raw_bytes_or_base64(redis_server, tmp_path, form):
    raw = os.urandom(31) + b"\n"  # a raw key may end in what looks like a newline: it is not stripped
    path = tmp_path / "cache.key"
    path.write_bytes(raw if form == "raw" else base64.b64encode(raw) + b"\n")
    store = cache_from({"MASKINPORTEN_CACHE_URL": redis_server.url, "MASKINPORTEN_CACHE_KEY_FILE": str(path)})
    reference = RedisTokenCache.from_url(redis_server.url, encryption_key=raw)
    assert isinstance(store, RedisTokenCache)
    assert store.entry_name("k" * 64) == reference.entry_name("k" * 64)


@pytest.mark.parametrize(
    ("environ", "field", "words"),
    [
        ({"MASKINPORTEN_CACHE_URL": "redis://127.0.0.1:1"}, "MASKINPORTEN_CACHE_KEY", "is required"),
        ({"MASKINPORTEN_CACHE_URL": "redis://127.0.0.1:1", "MASKINPORTEN_CACHE_KEY": "c2hvcnQ="},
         "MASKINPORTEN_CACHE_KEY", "32"),
        ({"MASKINPORTEN_CACHE_KEY": "c2hvcnQ="}, "MASKINPORTEN_CACHE_KEY", "MASKINPORTEN_CACHE_URL"),
        ({"MASKINPORTEN_CACHE_URL": "memcached://127.0.0.1:1"}, "MASKINPORTEN_CACHE_URL", "redis://"),
        ({"MASKINPORTEN_CACHE_URL": "redis://127.0.0.1:1", "MASKINPORTEN_CACHE_KEY_FILE": "/nonexistent/key"},
         "MASKINPORTEN_CACHE_KEY_FILE", "cannot read"),
    ],
)  # fmt: skip
def test_configuration_errors_name_the_variable(environ, field, words):
    with pytest.raises(ConfigurationError) as caught:
        cache_from(environ)
    assert caught.value.field == field
    assert words in caught.value.problem
    assert "c2hvcnQ=" not in str(caught.value)


def test_a_missing_backend_is_named_with_its_install_command(monkeypatch):
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [])
    with pytest.raises(ConfigurationError) as caught:
        cache_from({"MASKINPORTEN_CACHE_URL": "rediss://cache:6379/0", "MASKINPORTEN_CACHE_KEY": "x"})
    assert caught.value.field == "MASKINPORTEN_CACHE_URL"
    assert "pip install 'maskinporten-auth[redis]'" in caught.value.problem


def test_from_env_builds_an_auth_on_the_shared_store(redis_fleet, redis_server, redis_key):
    fleet = redis_fleet(customers=1)
    environ = {
        "MASKINPORTEN_CLIENT_ID": fleet.client_id,
        "MASKINPORTEN_SCOPES": SCOPE,
        "MASKINPORTEN_CACHE_URL": redis_server.url,
        "MASKINPORTEN_CACHE_KEY": redis_key,
    }
    first = MaskinportenAuth.from_env(environ=environ, signer=fleet.signer, environment=fleet.emulator.environment)
    second = MaskinportenAuth.from_env(environ=environ, signer=fleet.signer, environment=fleet.emulator.environment)
    assert isinstance(first.cache, RedisTokenCache)
    assert first.get_token() == second.get_token()
    assert fleet.grants() == 1


def test_no_org_number_scope_client_id_or_token_is_readable_in_the_server(redis_fleet, redis_own_server, redis_key):
    fleet = redis_fleet(customers=3)
    auth = fleet.auth(RedisTokenCache.from_url(redis_own_server.url, encryption_key=redis_key))
    tokens = [auth.with_consumer_org(customer).get_token() for customer in fleet.customers]
    contents = redis_own_server.dump()
    assert len(contents) == len(fleet.customers)
    secrets = [*fleet.customers, SCOPE, fleet.client_id, *tokens, *(part for t in tokens for part in t.split("."))]
    readable = [b"eyJ", *(secret.encode() for secret in secrets)]
    everything = b"\n".join([*contents, *contents.values()])
    assert [secret for secret in readable if secret in everything] == []
    assert all(len(value) > 100 for value in contents.values())  # something is stored: sealed, not empty


def test_no_token_or_key_in_a_log_line_a_repr_or_an_event(redis_fleet, redis_server, redis_key, caplog):
    events = []
    fleet = redis_fleet(customers=2)
    caplog.set_level(logging.DEBUG)
    store = RedisTokenCache.from_url(redis_server.url, encryption_key=redis_key, on_event=events.append)
    auth = fleet.auth(store)
    tokens = [auth.with_consumer_org(customer).get_token() for customer in fleet.customers]
    redis_server.client().set(store.entry_name(auth.with_consumer_org(fleet.customers[0]).cache_key), b"garbage")
    store._local.clear()
    tokens += [auth.with_consumer_org(customer).get_token() for customer in fleet.customers]
    with pytest.raises(ConfigurationError) as caught:
        RedisTokenCache.from_url(redis_server.url, encryption_key=redis_key[:-4])
    said = [record.getMessage() for record in caplog.records]
    cached = [repr(store.get(auth.with_consumer_org(customer).cache_key)) for customer in fleet.customers]
    said += [repr(store), repr(auth), *cached, str(caught.value), *map(repr, events)]
    assert events, "the garbage entry was reported"
    for secret in [redis_key, redis_key[:-4], *tokens]:
        assert not [line for line in said if secret in line]
