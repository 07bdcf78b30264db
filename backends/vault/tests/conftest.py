"""A real OpenBao dev server (maskinporten_auth_vault.testing) for the Vault Transit backend's tests, and helpers.

Fixture names start with ``vault_`` or ``bao_`` because every backend's tests run in one pytest session.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jose import jwt
from maskinporten_auth_vault import policy
from maskinporten_auth_vault.testing import BaoServer, running_bao

from maskinporten_auth.testing import issue_certificate_chain

_HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}


@pytest.fixture(scope="session")
def bao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """The OpenBao dev server shared by the session's tests."""
    with running_bao(tmp_path_factory.mktemp("bao")) as server:
        yield server


@pytest.fixture
def bao_own_server(tmp_path: Path) -> Iterator[BaoServer]:
    """An OpenBao dev server of the test's own, for tests that break the server (seal it)."""
    with running_bao(tmp_path) as server:
        yield server


@pytest.fixture(scope="session")
def vault_root(bao_server: BaoServer) -> hvac.Client:
    """An hvac client with the root token."""
    return bao_server.client()


KeyFactory = Callable[..., str]


@pytest.fixture(scope="session")
def vault_new_key(vault_root: hvac.Client) -> KeyFactory:
    """Create a Transit key with a unique name: ``vault_new_key("rsa-2048", client=..., mount="transit")``."""

    def create(key_type: str = "rsa-2048", *, client: hvac.Client | None = None, mount: str = "transit") -> str:
        name = f"mp-{key_type}-{uuid.uuid4().hex[:8]}"
        (client or vault_root).secrets.transit.create_key(name, key_type=key_type, mount_point=mount)
        return name

    return create


@pytest.fixture(scope="session")
def vault_rsa_keys(vault_new_key: KeyFactory) -> dict[str, str]:
    """One shared key of each RSA size, by type; tests that rotate or reconfigure a key make their own."""
    return {key_type: vault_new_key(key_type) for key_type in ("rsa-2048", "rsa-3072", "rsa-4096")}


@pytest.fixture(scope="session")
def vault_public_key(vault_root: hvac.Client) -> Callable[..., rsa.RSAPublicKey]:
    """Read a key version's public key straight from Vault with the root token, independent of the signer."""

    def read(
        name: str, version: int = 1, *, client: hvac.Client | None = None, mount: str = "transit"
    ) -> rsa.RSAPublicKey:
        data = (client or vault_root).secrets.transit.read_key(name, mount_point=mount)["data"]
        key = serialization.load_pem_public_key(data["keys"][str(version)]["public_key"].encode())
        assert isinstance(key, rsa.RSAPublicKey)
        return key

    return read


@pytest.fixture(scope="session")
def vault_token_with_policy(vault_root: hvac.Client) -> Callable[[str], str]:
    """Create a token whose only policy is the given HCL (no default policy)."""

    def create(hcl: str) -> str:
        name = f"mp-{uuid.uuid4().hex[:8]}"
        vault_root.sys.create_or_update_policy(name, hcl)
        token: str = vault_root.auth.token.create(policies=[name], no_default_policy=True, ttl="1h")["auth"][
            "client_token"
        ]
        return token

    return create


@pytest.fixture(scope="session")
def vault_least_privilege_token(vault_token_with_policy: Callable[[str], str]) -> Callable[[str], str]:
    """A token with exactly the documented least-privilege policy for one key at ``transit``."""
    return lambda key_name: vault_token_with_policy(policy("transit", key_name))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="session")
def vault_sign_jwt() -> Callable[..., str]:
    """Build a compact JWT with the signer: header from its algorithm and kid/x5c, claims as given."""

    def sign(signer: Any, claims: dict[str, Any] | None = None) -> str:
        header: dict[str, Any] = {"alg": signer.algorithm, "typ": "JWT"}
        header.update({"kid": signer.kid} if signer.kid else {"x5c": signer.x5c} if signer.x5c else {})
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims or {"k": "v"})
        )
        return f"{signing_input}.{_b64url(signer.sign(signing_input.encode()))}"

    return sign


@pytest.fixture(scope="session")
def vault_assert_valid() -> Callable[[str, rsa.RSAPublicKey, str], None]:
    """Verify a compact JWT independently: with cryptography (PKCS#1 v1.5) and with python-jose."""

    def check(token: str, public_key: rsa.RSAPublicKey, algorithm: str) -> None:
        signing_input, _, signature = token.rpartition(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        public_key.verify(raw, signing_input.encode(), padding.PKCS1v15(), _HASHES[algorithm]())
        pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        jwt.decode(token, pem.decode(), algorithms=[algorithm], options={"verify_aud": False})

    return check


@pytest.fixture
def vault_env(bao_server: BaoServer, monkeypatch: pytest.MonkeyPatch) -> BaoServer:
    """Point VAULT_ADDR and VAULT_TOKEN at the test server (no namespace) for the default client."""
    monkeypatch.setenv("VAULT_ADDR", bao_server.address)
    monkeypatch.setenv("VAULT_TOKEN", bao_server.root_token)
    monkeypatch.delenv("VAULT_NAMESPACE", raising=False)
    return bao_server


@pytest.fixture(scope="session")
def vault_repo_root() -> Path:
    """The repository's root directory."""
    return Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def vault_issue_chain() -> Callable[[rsa.RSAPublicKey], tuple[bytes, x509.Certificate]]:
    """Issue a leaf certificate for a public key from a fresh CA: (PEM chain leaf first, the CA certificate)."""

    def issue(public_key: rsa.RSAPublicKey) -> tuple[bytes, x509.Certificate]:
        chain = issue_certificate_chain(public_key)
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain), chain[-1]

    return issue
