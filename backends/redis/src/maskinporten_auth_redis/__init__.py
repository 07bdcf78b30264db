"""A token cache on Redis or Valkey shared by a fleet of processes, for maskinporten-auth.

:class:`RedisTokenCache` keeps tokens in memory for the hot path and in the server for every other process, sealed
with AES-256-GCM; a lease in the server lets one process of the fleet fetch each customer's token per lifetime.

```python
from maskinporten_auth import MaskinportenAuth
from maskinporten_auth_redis import RedisTokenCache

cache = RedisTokenCache.from_url("rediss://tokens.internal:6379/0", encryption_key=os.environ["CACHE_KEY"])
auth = MaskinportenAuth(client_id=..., scopes=..., signer=..., cache=cache)
```
"""

from .cache import DEFAULT_LEASE_TIME, DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, RedisTokenCache, StoreEvent
from .sealing import new_encryption_key

__all__ = [
    "DEFAULT_LEASE_TIME",
    "DEFAULT_RETRY_INTERVAL",
    "DEFAULT_TIMEOUT",
    "RedisTokenCache",
    "StoreEvent",
    "new_encryption_key",
]
