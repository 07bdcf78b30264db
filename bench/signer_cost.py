"""Token acquisition cost per signer against the emulator: the local key, and each remote backend's test server.

The remote servers are started with the code of the backends' own test suites (backends/*/tests/conftest.py and
backends/azure/tests/fake_key_vault.py), imported by file path, so the bench and the tests exercise the same
servers: LocalStack's KMS, an OpenBao dev server (Vault Transit), the project's TLS Key Vault and a SoftHSM2
token (PKCS#11). A backend whose server cannot be started within a bounded time is reported as skipped, with the
reason.

Each acquisition clears the token cache and calls ``get_token()``: a grant is built, signed and posted to the
emulator over a warm connection. The signers take turns (interleaved rounds); the ratio is the median over rounds
of (signer / local key).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from benchkit import Results, Row, Setup, median, register

from maskinporten_auth import MaskinportenAuth
from maskinporten_auth.signer import Signer

SECTION = "signers"
CHART = "Token acquisition (sign + POST to the emulator), ratio to the local key"
BACKENDS = Path(__file__).resolve().parent.parent / "backends"
START_TIMEOUT = 90.0
LOCAL = "local key (LocalKeySigner)"


class Skipped(Exception):
    """The backend's server is not available; the message says why."""


def _load(name: str, path: Path) -> ModuleType:
    """Import a test-support module by file path, under a name of its own."""
    if name in sys.modules:
        return sys.modules[name]
    if not path.exists():
        raise Skipped(f"{path.relative_to(BACKENDS.parent)} does not exist")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise Skipped(f"{path.relative_to(BACKENDS.parent)} cannot be imported here: {exc}") from None
    return module


def _fixture_body(fixture: Any) -> Callable[..., Any]:
    """The function behind a pytest fixture, to run a conftest's set-up and tear-down outside pytest."""
    unwrap = getattr(fixture, "_get_wrapped_function", None)  # pytest >= 8.4
    if unwrap is not None:
        return unwrap()  # type: ignore[no-any-return]
    wrapped = getattr(fixture, "__pytest_wrapped__", None)  # older pytest
    return wrapped.obj if wrapped is not None else fixture  # type: ignore[no-any-return]


@contextlib.contextmanager
def _generator_fixture(fixture: Any, *args: Any) -> Iterator[Any]:
    generator = _fixture_body(fixture)(*args)
    value = next(generator)
    try:
        yield value
    finally:
        with contextlib.suppress(StopIteration):
            next(generator)


class _TmpPathFactory:
    """What the conftests ask of pytest's ``tmp_path_factory``."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self._root))


class _PytestConfig:
    """What the LocalStack conftest asks of ``pytestconfig``: a stash (empty) and no output capture."""

    stash: dict[Any, Any] = {}  # noqa: RUF012 - read-only here
    pluginmanager = SimpleNamespace(get_plugin=lambda name: None)


# One context manager per backend: yields (signer name, signer) or raises Skipped.


@contextlib.contextmanager
def aws_kms(tmp: _TmpPathFactory) -> Iterator[Signer]:
    conftest = _load("bench_kms_conftest", BACKENDS / "awskms" / "tests" / "conftest.py")
    from maskinporten_auth_awskms import AwsKmsSigner

    ready = conftest._venv_dir() / ".ready"
    if not ready.exists():
        raise Skipped(
            f"LocalStack's environment is not provisioned ({ready} missing); the awskms tests provision it "
            "(about a minute) - run `nox -s tests` once"
        )
    with _generator_fixture(conftest.kms_endpoint, _PytestConfig(), tmp) as endpoint:
        client = _fixture_body(conftest.kms_make_client)(endpoint)()
        key_id = client.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        yield AwsKmsSigner(key_id, client=client, kid="bench-kms")


@contextlib.contextmanager
def vault_transit(tmp: _TmpPathFactory) -> Iterator[Signer]:
    conftest = _load("bench_vault_conftest", BACKENDS / "vault" / "tests" / "conftest.py")
    from maskinporten_auth_vault import VaultTransitSigner

    with _generator_fixture(conftest.bao_server, tmp) as server:
        client = server.client()
        name = f"bench-{uuid.uuid4().hex[:8]}"
        client.secrets.transit.create_key(name, key_type="rsa-2048", mount_point="transit")
        yield VaultTransitSigner(name, client=client, kid="bench-vault")


@contextlib.contextmanager
def azure_key_vault(tmp: _TmpPathFactory) -> Iterator[Signer]:
    fake = _load("bench_fake_key_vault", BACKENDS / "azure" / "tests" / "fake_key_vault.py")
    from maskinporten_auth_azure import AzureKeyVaultSigner

    token = "bench-" + uuid.uuid4().hex
    with fake.FakeKeyVault(tmp.mktemp("akv")) as vault:
        vault.add_caller(token)
        key = vault.create_rsa_key("bench-" + uuid.uuid4().hex[:8], hsm=True)
        signer = AzureKeyVaultSigner(
            vault.key_url(key),
            credential=fake.StaticTokenCredential(token),
            kid="bench-akv",
            connection_verify=vault.ca_file,
            verify_challenge_resource=False,
        )
        try:
            yield signer
        finally:
            signer.close()


@contextlib.contextmanager
def pkcs11_softhsm(tmp: _TmpPathFactory) -> Iterator[Signer]:
    conftest = _load("bench_pkcs11_conftest", BACKENDS / "pkcs11" / "tests" / "conftest.py")
    from maskinporten_auth_pkcs11 import Pkcs11Signer

    module, why = conftest.find_module()
    if module is None:
        raise Skipped(why)
    with _generator_fixture(conftest.softhsm, tmp) as softhsm:
        key = _fixture_body(conftest.softhsm_new_key)(softhsm)()
        yield Pkcs11Signer(
            softhsm.module, token_label=softhsm.labels["main"], key_label=key.label, pin=softhsm.pin, kid="bench-p11"
        )


REMOTES: dict[str, Callable[[_TmpPathFactory], contextlib.AbstractContextManager[Signer]]] = {
    "AWS KMS (LocalStack)": aws_kms,
    "Vault Transit (OpenBao dev server)": vault_transit,
    "Azure Key Vault (the project's TLS Key Vault server)": azure_key_vault,
    "PKCS#11 (SoftHSM2 token)": pkcs11_softhsm,
}


def _start(stack: ExitStack, starter: Callable[[], contextlib.AbstractContextManager[Signer]]) -> Signer:
    started = time.monotonic()
    signer = stack.enter_context(starter())
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
        tmp = _TmpPathFactory(Path(directory))
        for name, starter in REMOTES.items():
            started = time.monotonic()
            try:
                signer = _start(stack, lambda starter=starter: starter(tmp))  # type: ignore[misc]
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
