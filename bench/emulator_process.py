"""A Maskinporten emulator in a child process, so that its work does not compete with the client for the GIL.

Run as a script with a JSON argument ``{"client_id", "orgno", "scope", "kid", "jwk", "token_lifetime"}``: it
registers that client, prints its base URL and serves until its stdin closes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loopback import child_server

from maskinporten_auth import Environment
from maskinporten_auth.testing import MaskinportenEmulator


@contextmanager
def emulator_in_child(
    *, client_id: str, orgno: str, scope: str, kid: str, jwk: dict[str, Any], token_lifetime: int
) -> Iterator[Environment]:
    """Start an emulator with one registered client in a child process; yield the Environment that points at it."""
    config = {
        "client_id": client_id,
        "orgno": orgno,
        "scope": scope,
        "kid": kid,
        "jwk": jwk,
        "token_lifetime": token_lifetime,
    }
    with child_server(Path(__file__).resolve(), json.dumps(config)) as url:
        yield Environment(issuer=url + "/", token_endpoint=url + "/token", jwks_uri=url + "/jwk", name="emulator")


def main() -> None:
    config = json.loads(sys.argv[1])
    with MaskinportenEmulator(token_lifetime=config["token_lifetime"]) as emulator:
        emulator.register_client(
            config["client_id"], orgno=config["orgno"], scopes=[config["scope"]], keys={config["kid"]: config["jwk"]}
        )
        print(emulator.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
