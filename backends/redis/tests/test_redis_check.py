"""store.check() and ``maskinporten doctor`` on a shared store: what the hot path absorbs, the check raises."""

from __future__ import annotations

import pytest
import redis
from cryptography.hazmat.primitives import serialization

from maskinporten_auth.cli import main

from .conftest import SCOPE


def test_check_writes_reads_and_removes_a_probe_entry(redis_own_server, redis_store):
    store = redis_store(redis_own_server.url)
    described = store.check()
    assert f"127.0.0.1:{redis_own_server.port}/0" in described and "sealed with AES-256-GCM" in described
    assert redis_own_server.dump() == {}  # the probe entry and its lease are gone


def test_check_raises_what_the_hot_path_absorbs(redis_own_server, redis_store):
    client = redis_own_server.client()
    client.execute_command("ACL", "SETUSER", "no-scripts", "on", ">secret-pw", "~*", "+@all", "-@scripting")
    limited = redis_store(redis_own_server.url.replace("redis://", "redis://no-scripts:secret-pw@"))
    assert limited.load("k" * 64) is None  # a plain read works, and nothing else tells of the missing permission
    with pytest.raises(redis.exceptions.NoPermissionError) as refused:
        limited.check()
    assert "secret-pw" not in str(refused.value)
    with pytest.raises(redis.exceptions.ConnectionError):
        redis_store("redis://127.0.0.1:1/0").check()


def doctor_environ(fleet, tmp_path, cache_url: str, cache_key: str) -> dict[str, str]:
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        fleet.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {
        "MASKINPORTEN_ENV": fleet.emulator.issuer,
        "MASKINPORTEN_CLIENT_ID": fleet.client_id,
        "MASKINPORTEN_SCOPES": SCOPE,
        "MASKINPORTEN_KEY": pem.as_uri(),
        "MASKINPORTEN_KID": "fleet-key",
        "MASKINPORTEN_CACHE_URL": cache_url,
        "MASKINPORTEN_CACHE_KEY": cache_key,
    }


def test_doctor_checks_the_shared_cache(redis_fleet, redis_server, redis_key, tmp_path, monkeypatch, capsys):
    fleet = redis_fleet(customers=1)
    for name, value in doctor_environ(fleet, tmp_path, redis_server.url, redis_key).items():
        monkeypatch.setenv(name, value)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"[ ok ] shared cache: 127.0.0.1:{redis_server.port}/0: wrote, read back and removed" in out
    assert "[ ok ] token:" in out

    monkeypatch.setenv("MASKINPORTEN_CACHE_URL", "redis://127.0.0.1:1/0")
    assert main(["doctor"]) == 3
    out = capsys.readouterr().out
    assert "[FAIL] shared cache: ConnectionError:" in out
    assert "every process fetches its own" in out
    assert redis_key not in out

    monkeypatch.setenv("MASKINPORTEN_CACHE_KEY", "c2hvcnQ=")
    assert main(["doctor"]) == 2
    assert "[FAIL] shared cache: MASKINPORTEN_CACHE_KEY" in capsys.readouterr().out
