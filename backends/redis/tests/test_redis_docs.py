"""What docs/guides/fleet.md tells operators to do works as written."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from maskinporten_auth_redis import RedisTokenCache, StoreEvent

from .test_redis_store import KEY, OTHER_KEY, token

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "guides" / "fleet.md"


def test_the_documented_acl_user_is_enough_for_the_store(redis_own_server, redis_key):
    (acl,) = re.findall(r"^ACL SETUSER .*$", GUIDE.read_text(), flags=re.MULTILINE)
    password = secrets.token_hex(16)
    redis_own_server.client().execute_command(*acl.replace(">password", f">{password}").split())
    events: list[StoreEvent] = []
    url = f"redis://maskinporten:{password}@127.0.0.1:{redis_own_server.port}/0"
    store, other = (
        RedisTokenCache.from_url(url, encryption_key=redis_key, lease_time=0.3, on_event=events.append) for _ in "ab"
    )
    store.client.ping()
    with store.fetching(KEY, timeout=1):
        time.sleep(0.3)  # renewed
        store.put(KEY, token("eyJ.first"))
    loaded = other.load(KEY)
    assert loaded is not None and loaded.value == "eyJ.first"
    other.invalidate(KEY, "eyJ.first")
    assert other.load(KEY) is None
    store.put(KEY, token("eyJ.second"))
    other.put(KEY, token("eyJ.longer", lifetime=120))  # replaces the entry it read
    longer = store.load(KEY)
    assert longer is not None and longer.value == "eyJ.longer"
    redis_own_server.client().rpush(store.lease_name(OTHER_KEY), "planted")
    with store.fetching(OTHER_KEY, timeout=1):  # a value of another type is removed, the lease taken
        assert store.lease_name(OTHER_KEY) in store._leases
    store.clear()
    assert redis_own_server.dump() == {}
    assert [event.kind for event in events] == ["entry_rejected"]
    assert store.available and other.available
