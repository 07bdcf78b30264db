"""Key rotation against the emulator: a client, an admin integration and the application, for any backend's keys.

:class:`RotationRig` registers an application client that signs with ``old_signer`` and a separate admin
integration, and checks what a rotation must leave behind. :func:`crash_and_rerun` runs a rotation that dies after
one step and a second run that must converge. The core's tests and each backend's use them with their own keys.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from cryptography.hazmat.primitives.asymmetric import rsa

from ..auth import MaskinportenAuth
from ..errors import MaskinportenError
from ..jwk import public_key_from_jwk
from ..local_key import LocalKeySigner
from ..selfservice import ADMIN_SCOPES, RotationProgress, RotationResult, SelfService
from ..signer import Signer
from .emulator import MaskinportenEmulator

__all__ = [
    "ROTATION_STEPS",
    "Crash",
    "RotationRig",
    "crash_and_rerun",
    "rotate_backend_key",
    "tokens_throughout",
]

#: The steps after which a rotation can die (``rollback`` aside): each is followed by the next or by the end.
ROTATION_STEPS = ("read", "add", "verified", "switch", "remove")
APPLICATION_SCOPE = "nav:inntektsmelding/lps.write"
SUPPLIER = "313042995"


class Crash(BaseException):
    """The process dies here (a BaseException, so that nothing on the way handles it)."""


@dataclasses.dataclass
class RotationRig:
    """An application client on ``emulator`` that signs with ``old_signer``, and an admin integration."""

    emulator: MaskinportenEmulator
    client_id: str
    old_signer: Signer
    api: SelfService

    @classmethod
    def create(cls, emulator: MaskinportenEmulator, old_signer: Signer) -> RotationRig:
        """Register the application client (``old_signer``'s key) and an admin integration with a key of its own."""
        client_id = str(uuid.uuid4())
        emulator.register_client(
            client_id,
            orgno=SUPPLIER,
            scopes=[APPLICATION_SCOPE],
            keys={str(old_signer.kid): old_signer.public_key()},
        )
        admin_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        admin_id = f"admin-{client_id}"
        emulator.register_client(
            admin_id, orgno=SUPPLIER, scopes=list(ADMIN_SCOPES), keys={"admin": admin_key.public_key()}
        )
        admin = MaskinportenAuth(
            admin_id, list(ADMIN_SCOPES), LocalKeySigner(admin_key, kid="admin"), emulator.environment
        )
        return cls(emulator, client_id, old_signer, SelfService(admin, emulator.selfservice_url))

    def application(self, signer: Signer | None = None) -> MaskinportenAuth:
        """The application's auth, signing with ``signer`` (the old key by default), as a process starts it."""
        return MaskinportenAuth(self.client_id, APPLICATION_SCOPE, signer or self.old_signer, self.emulator.environment)

    def rotate(self, new_signer: Signer, auth: MaskinportenAuth, **options: object) -> RotationResult:
        """Rotate to ``new_signer`` with quick probes and removal of the old key at once."""
        options.setdefault("remove_after", 0)
        options.setdefault("poll_interval", 0.05)
        options.setdefault("old_kid", self.old_signer.kid)
        return self.api.rotate(self.client_id, new_signer, auth=auth, **options)  # type: ignore[arg-type]

    def kids(self) -> list[str]:
        """The kids registered on the application client now."""
        return [key.kid for key in self.api.keys(self.client_id)]

    def registered_public_key(self, kid: str) -> rsa.RSAPublicKey:
        """The public key registered under ``kid``, as the self-service API returns it."""
        return public_key_from_jwk(next(key.jwk for key in self.api.keys(self.client_id) if key.kid == kid))

    def refused_application_grants(self, kid: str) -> int:
        """How many grants signed with ``kid`` for the application were refused, the rotation's own probes aside.

        A probe is a grant signed with the new key before the switch; the application's grants come from the auth
        it runs with, so this counts refused grants with ``kid`` after the rotation first saw it accepted.
        """
        records = [
            record
            for record in self.emulator.grants
            if (record.header or {}).get("kid") == kid and (record.claims or {}).get("iss") == self.client_id
        ]
        first_accepted = next((index for index, record in enumerate(records) if record.status == 200), len(records))
        return sum(1 for record in records[first_accepted:] if record.status != 200)

    def close(self) -> None:
        """Close the admin integration and the API client."""
        self.api.close()
        if self.api.admin_auth is not None:
            self.api.admin_auth.close()


def crash_and_rerun(rig: RotationRig, new_signer: Signer, crash_after: str) -> RotationResult:
    """Rotate, die after the step ``crash_after``, restart as a process would, rotate again; return the rerun's result.

    The restarted process signs with the new key when the first run got as far as switching, else with the old.
    """
    auth = rig.application()

    def die(progress: RotationProgress) -> None:
        if progress.step == crash_after:
            raise Crash(crash_after)

    with suppress(Crash):
        rig.rotate(new_signer, auth, progress=die)
    restarted_with = auth.signer
    auth.close()
    restarted = rig.application(restarted_with)
    try:
        result = rig.rotate(new_signer, restarted)
        restarted.get_token()
        return result
    finally:
        restarted.close()


def rotate_backend_key(
    emulator: MaskinportenEmulator, old_signer: Signer, new_signer: Signer, crash_after: str
) -> rsa.RSAPublicKey:
    """Rotate a client from one backend key to another, dying after ``crash_after`` and running again.

    Raises AssertionError unless the rerun converged: only the new key registered, no application grant refused.
    Returns the public key registered for the new kid, to compare with the key service's own.
    """
    emulator.propagation_delay = 0.2
    rig = RotationRig.create(emulator, old_signer)
    try:
        crash_and_rerun(rig, new_signer, crash_after)
        kids = rig.kids()
        if kids != [new_signer.kid]:
            raise AssertionError(f"the rerun left {kids} registered, not only {new_signer.kid}")
        for kid in (old_signer.kid, new_signer.kid):
            if kid is not None and rig.refused_application_grants(kid):
                raise AssertionError(f"an application grant signed with {kid} was refused")
        return rig.registered_public_key(str(new_signer.kid))
    finally:
        rig.close()


@contextmanager
def tokens_throughout(
    auth: MaskinportenAuth, *, threads: int = 4, fresh_every: int = 3
) -> Iterator[Callable[[], tuple[int, list[MaskinportenError]]]]:
    """Threads that get tokens from ``auth`` until the block ends, forcing a new grant every ``fresh_every`` calls.

    Yields a function returning (tokens got, errors) so far.
    """
    stop = threading.Event()
    lock = threading.Lock()
    counts = [0]
    errors: list[MaskinportenError] = []

    def work() -> None:
        calls = 0
        while not stop.is_set():
            calls += 1
            try:
                token = auth.get_token()
            except MaskinportenError as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:
                counts[0] += 1
            if calls % fresh_every == 0:
                auth.cache.invalidate(auth.cache_key, token)

    workers = [threading.Thread(target=work, name=f"tokens-{index}") for index in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield lambda: (counts[0], list(errors))
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
