"""A Maskinporten emulator in a child process, so that its work does not compete with the client for the GIL.

Run as a script with a JSON argument ``{"client_id", "orgno", "scope", "kid", "jwk", "token_lifetime"}``: it
registers that client, prints its base URL and serves until its stdin closes. While it serves it answers commands,
one JSON object per line on its stdin, with one JSON line on its stdout: ``{"delegate": [orgno, ...]}`` lets those
customers delegate the scope to the client's organisation; ``{"latency": seconds, "times": count}`` makes the next
``count`` token requests wait ``seconds`` before they are handled, as a Maskinporten a network away would (``{"latency":
0}`` ends that); ``{"stats": true}`` reports the token requests it received, the tokens it issued, the grant ids
(``jti``) it saw more than once, and the most token requests it answered at once since the last report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopback import child_process

from maskinporten_auth import Environment
from maskinporten_auth.testing import Fault, MaskinportenEmulator


@dataclass
class ChildEmulator:
    """The parent's handle on an emulator in a child process."""

    environment: Environment
    process: subprocess.Popen[str]

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError("the emulator process exited")
        return json.loads(answer)  # type: ignore[no-any-return]

    def delegate(self, consumer_orgs: Iterable[str]) -> None:
        """Let each of ``consumer_orgs`` delegate the client's scope to the client's organisation."""
        self._ask({"delegate": list(consumer_orgs)})

    def add_latency(self, seconds: float, times: int) -> None:
        """Make the next ``times`` token requests wait ``seconds`` first; with ``seconds`` 0, answer at once again."""
        self._ask({"latency": seconds, "times": times})

    def stats(self) -> dict[str, int]:
        """``token_requests``, ``tokens_issued``, ``reused_jtis`` (a count); ``peak_in_flight`` since the last call."""
        return self._ask({"stats": True})

    def cpu_seconds(self) -> float | None:
        """CPU time the emulator process has used so far (user and system), or None where /proc is not there."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def child_emulator(
    *, client_id: str, orgno: str, scope: str, kid: str, jwk: dict[str, Any], token_lifetime: int
) -> Iterator[ChildEmulator]:
    """Start an emulator with one registered client in a child process; yield a handle on it."""
    config = {
        "client_id": client_id,
        "orgno": orgno,
        "scope": scope,
        "kid": kid,
        "jwk": jwk,
        "token_lifetime": token_lifetime,
    }
    with child_process(Path(__file__).resolve(), json.dumps(config)) as (process, url):
        endpoints = {"issuer": url + "/", "token_endpoint": url + "/token", "jwks_uri": url + "/jwk"}
        yield ChildEmulator(Environment(**endpoints, name="emulator"), process)


@contextmanager
def emulator_in_child(
    *, client_id: str, orgno: str, scope: str, kid: str, jwk: dict[str, Any], token_lifetime: int
) -> Iterator[Environment]:
    """Start an emulator with one registered client in a child process; yield the Environment that points at it."""
    with child_emulator(
        client_id=client_id, orgno=orgno, scope=scope, kid=kid, jwk=jwk, token_lifetime=token_lifetime
    ) as child:
        yield child.environment


def main() -> None:
    config = json.loads(sys.argv[1])
    with MaskinportenEmulator(token_lifetime=config["token_lifetime"]) as emulator:
        emulator.register_client(
            config["client_id"], orgno=config["orgno"], scopes=[config["scope"]], keys={config["kid"]: config["jwk"]}
        )
        print(emulator.url, flush=True)
        for line in sys.stdin:  # until the parent closes our stdin
            command = json.loads(line)
            if "delegate" in command:
                for consumer_org in command["delegate"]:
                    emulator.delegate(consumer_org, config["orgno"], config["scope"])
                answer: dict[str, int] = {"delegated": len(command["delegate"])}
            elif "latency" in command:
                emulator.clear_faults()
                if command["latency"]:
                    emulator.inject_fault(Fault.slow(command["latency"]), times=command["times"])
                answer = {"latency_ms": round(command["latency"] * 1000)}
            else:
                answer = {
                    "token_requests": emulator.token_requests,
                    "tokens_issued": emulator.tokens_issued,
                    "reused_jtis": len(emulator.reused_jtis),
                    "peak_in_flight": emulator.peak_in_flight,
                }
                emulator.restart_peak_in_flight()
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
