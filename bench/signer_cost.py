"""Token acquisition cost per signer against the emulator: the local key, and each remote backend's test server.

The remote servers are the ones the backends' own test suites run, from each backend's ``testing`` module
(``maskinporten_auth_awskms.testing``, ``maskinporten_auth_vault.testing``, ``maskinporten_auth_azure.testing``,
``maskinporten_auth_gcpkms.testing``, ``maskinporten_auth_pkcs11.testing``): LocalStack's KMS, an OpenBao dev server
(Vault Transit), the project's TLS Key Vault, the project's Cloud KMS server (driven by Google's client over REST)
and a SoftHSM2 token (PKCS#11). A backend whose server cannot be started within a bounded time is
reported as skipped, with the reason.

Each acquisition clears the token cache and calls ``get_token()``: a grant is built, signed and posted to the
emulator over a warm connection. The signers take turns (interleaved rounds); the ratio is the median over rounds
of (signer / local key).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

from benchkit import Results, Row, Setup, median, register

from maskinporten_auth import MaskinportenAuth
from maskinporten_auth.signer import Signer

SECTION = "signers"
CHART = "Token acquisition (sign + POST to the emulator), ratio to the local key"
START_TIMEOUT = 90.0
LOCAL = "local key (LocalKeySigner)"


class Skipped(Exception):
    """The backend's server is not available; the message says why."""


# One context manager per backend, given an empty directory of its own: yields a signer whose key lives in the
# backend's test server, or raises Skipped.


@contextlib.contextmanager
def aws_kms(tmp: Path) -> Iterator[Signer]:
    from maskinporten_auth_awskms import AwsKmsSigner
    from maskinporten_auth_awskms.testing import localstack_python, make_kms_client, running_localstack

    python = localstack_python()
    if python is None:
        raise Skipped(
            "LocalStack's environment is not provisioned; the awskms tests provision it (about a minute) - run "
            "`nox -s tests` once"
        )
    with running_localstack(python, tmp) as endpoint:
        client = make_kms_client(endpoint)
        key_id = client.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        yield AwsKmsSigner(key_id, client=client, kid="bench-kms")


@contextlib.contextmanager
def vault_transit(tmp: Path) -> Iterator[Signer]:
    from maskinporten_auth_vault import VaultTransitSigner
    from maskinporten_auth_vault.testing import running_bao

    with running_bao(tmp) as server:
        client = server.client()
        name = f"bench-{uuid.uuid4().hex[:8]}"
        client.secrets.transit.create_key(name, key_type="rsa-2048", mount_point="transit")
        yield VaultTransitSigner(name, client=client, kid="bench-vault")


@contextlib.contextmanager
def azure_key_vault(tmp: Path) -> Iterator[Signer]:
    from maskinporten_auth_azure import AzureKeyVaultSigner
    from maskinporten_auth_azure.testing import FakeKeyVault, StaticTokenCredential

    token = "bench-" + uuid.uuid4().hex
    with FakeKeyVault(tmp) as vault:
        vault.add_caller(token)
        key = vault.create_rsa_key("bench-" + uuid.uuid4().hex[:8], hsm=True)
        signer = AzureKeyVaultSigner(
            vault.key_url(key),
            credential=StaticTokenCredential(token),
            kid="bench-akv",
            connection_verify=vault.ca_file,
            verify_challenge_resource=False,
        )
        try:
            yield signer
        finally:
            signer.close()


@contextlib.contextmanager
def gcp_kms(tmp: Path) -> Iterator[Signer]:
    from maskinporten_auth_gcpkms import GcpKmsSigner
    from maskinporten_auth_gcpkms.testing import FakeCloudKms, make_kms_client

    with FakeCloudKms() as kms:
        version = kms.create_key_version("bench", "grant-" + uuid.uuid4().hex[:8], "RSA_SIGN_PKCS1_2048_SHA256")
        signer = GcpKmsSigner(version.name, client=make_kms_client(kms.endpoint), kid="bench-gcp", algorithm="RS256")
        yield signer


@contextlib.contextmanager
def pkcs11_softhsm(tmp: Path) -> Iterator[Signer]:
    from maskinporten_auth_pkcs11 import Pkcs11Signer
    from maskinporten_auth_pkcs11.testing import find_module, new_key, softhsm_tokens

    module, why = find_module()
    if module is None:
        raise Skipped(why)
    with softhsm_tokens(module, tmp) as softhsm:
        key = new_key(softhsm)
        yield Pkcs11Signer(
            softhsm.module, token_label=softhsm.labels["main"], key_label=key.label, pin=softhsm.pin, kid="bench-p11"
        )


REMOTES: dict[str, Callable[[Path], contextlib.AbstractContextManager[Signer]]] = {
    "AWS KMS (LocalStack)": aws_kms,
    "Vault Transit (OpenBao dev server)": vault_transit,
    "Azure Key Vault (the project's TLS Key Vault server)": azure_key_vault,
    "Google Cloud KMS (the project's Cloud KMS server)": gcp_kms,
    "PKCS#11 (SoftHSM2 token)": pkcs11_softhsm,
}


def _start(
    stack: ExitStack, starter: Callable[[Path], contextlib.AbstractContextManager[Signer]], directory: Path
) -> Signer:
    started = time.monotonic()
    signer = stack.enter_context(starter(directory))
    if time.monotonic() - started > START_TIMEOUT:
        raise Skipped(f"its server took {time.monotonic() - started:.0f} s to start (limit {START_TIMEOUT:.0f} s)")
    return signer


def _acquire(auth: MaskinportenAuth) -> float:
    auth.cache.clear()
    started = time.perf_counter()
    auth.get_token()
    return time.perf_counter() - started


def run(setup: Setup, results: Results, *, quick: bool = False) -> None:
    rounds = 5 if quick else 25
    auths: dict[str, MaskinportenAuth] = {LOCAL: setup.auth()}
    first: dict[str, float] = {}
    skipped: dict[str, str] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="mp-bench-") as directory:
        for name, starter in REMOTES.items():
            started = time.monotonic()
            own = Path(directory) / starter.__name__
            own.mkdir()
            try:
                signer = _start(stack, starter, own)
                client_id = register(setup.emulator, signer)
                auths[name] = MaskinportenAuth(
                    client_id=client_id,
                    scopes=setup.auth().scopes,
                    signer=signer,
                    environment=setup.emulator.environment,
                )
            except Skipped as exc:
                skipped[name] = str(exc)
                continue
            except ImportError as exc:
                skipped[name] = f"the backend or its test server is not installed: {exc}"
                continue
            except Exception as exc:  # a server that fails to start is a skipped row, not a failed run
                skipped[name] = f"its server did not start: {type(exc).__name__}: {str(exc)[:300]}"
                continue
            results.note(SECTION, f"{name}: server ready in {time.monotonic() - started:.1f} s")
        for name, auth in auths.items():
            first[name] = _acquire(auth)  # includes the public-key fetch and key check of a remote signer
        samples: dict[str, list[float]] = {name: [] for name in auths}
        names = list(auths)
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(_acquire(auths[name]))
        for auth in auths.values():
            auth.close()
    results.note(SECTION, f"{rounds} interleaved rounds; the first acquisition per signer is not counted")
    local = samples[LOCAL]
    for name in [LOCAL, *REMOTES]:
        if name in skipped:
            results.add(Row(SECTION, name, None, "ms/token", note=f"skipped: {skipped[name]}"))
            continue
        ratio = median([s / b for s, b in zip(samples[name], local, strict=True)])
        if name != LOCAL:
            results.chart(CHART, "token acquisition", name, ratio)
        results.add(
            Row(
                SECTION,
                name,
                median(samples[name]) * 1e3,
                "ms/token",
                ratio if name != LOCAL else 1.0,
                LOCAL,
                note=f"first acquisition {first[name] * 1e3:.1f} ms",
            )
        )
