"""A Key Vault of the project's own for tests and benchmarks: HTTPS on loopback, real RSA, Key Vault's protocol.

No Key Vault emulator installs on the project's machines, so the backend's tests and the signer benchmark run the
real azure-keyvault-keys SDK unchanged against this server. It speaks what the SDK (4.11, azure-core 1.41) sends
and expects:

- TLS with a CA of its own (``ca_file``) and a server certificate for ``IP:127.0.0.1`` and ``DNS:localhost``;
- challenge authentication: a request without ``Authorization`` gets 401 with ``WWW-Authenticate: Bearer
  authorization=..., resource="https://vault.azure.net"``; an unknown bearer token gets 401 too;
- ``GET /keys/{name}/{version}`` (an empty version is the current one), ``POST /keys/{name}/{version}/sign``,
  ``GET /certificates/{name}/{version}``;
- Key Vault's error bodies: ``KeyNotFound``/``CertificateNotFound`` 404, ``Forbidden`` 403 (``ForbiddenByRbac``
  or, for a vault with access policies, ``AccessDenied``), ``KeyDisabled`` 403, ``BadParameter`` 400.

Each bearer token stands for a caller with a set of permissions (``keys/get``, ``keys/sign``,
``certificates/get``), so the tests can show what happens without the role or the access policy.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="https://vault.azure.net"'
ALL_PERMISSIONS = frozenset({"keys/get", "keys/sign", "certificates/get"})
DEFAULT_KEY_OPS = ("sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey")
_RS_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}
_RBAC_ACTIONS = {
    "keys/get": "Microsoft.KeyVault/vaults/keys/read",
    "keys/sign": "Microsoft.KeyVault/vaults/keys/sign/action",
    "certificates/get": "Microsoft.KeyVault/vaults/certificates/read",
}


def b64url(data: bytes) -> str:
    """Base64url without padding, as Key Vault writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def make_certificate(
    subject: str,
    public_key: Any,
    *,
    issuer: tuple[x509.Certificate, Any] | None = None,
    signing_key: Any = None,
    ca: bool = False,
    san: Iterable[x509.GeneralName] = (),
    days: int = 365,
) -> x509.Certificate:
    """A certificate for ``public_key``, issued by ``issuer`` (certificate, private key) or self-signed."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, signing_key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    sans = list(san)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class EnterpriseCa:
    """A root and an intermediate CA, as behind a virksomhetssertifikat (Buypass, Commfides)."""

    root: x509.Certificate
    intermediate: x509.Certificate
    intermediate_key: rsa.RSAPrivateKey

    @classmethod
    def create(cls) -> EnterpriseCa:
        """A new root CA and an intermediate CA under it."""
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        root = make_certificate("Test Enterprise Root CA", root_key.public_key(), signing_key=root_key, ca=True)
        intermediate_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        intermediate = make_certificate(
            "Test Enterprise Issuing CA", intermediate_key.public_key(), issuer=(root, root_key), ca=True
        )
        return cls(root, intermediate, intermediate_key)

    @property
    def issuer(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        """The intermediate CA's certificate and key, which issue leaf certificates."""
        return self.intermediate, self.intermediate_key

    def issue(self, subject: str, public_key: Any) -> x509.Certificate:
        """Issue a leaf certificate for ``public_key`` from the intermediate CA."""
        return make_certificate(subject, public_key, issuer=self.issuer)


def pem(certificates: Iterable[x509.Certificate]) -> bytes:
    """The certificates as concatenated PEM."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


@dataclass
class KeyVersion:
    """One version of a key: its private half stays here, as in an HSM."""

    name: str
    version: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    kty: str
    key_ops: list[str]
    enabled: bool = True
    created: int = field(default_factory=lambda: int(time.time()))

    def public_key(self) -> Any:
        """The public half of this key version."""
        return self.private_key.public_key()


@dataclass(frozen=True)
class CertificateVersion:
    """A version of a Key Vault certificate: its certificate and the key version it belongs to."""

    name: str
    version: str
    certificate: x509.Certificate
    key_version: str


@dataclass(frozen=True)
class Caller:
    """Whom a bearer token authenticates, and what it may do in this vault."""

    permissions: frozenset[str]
    model: Literal["rbac", "access-policy"] = "rbac"
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class RecordedRequest:
    """A request the vault received, for assertions."""

    method: str
    path: str
    authorized: bool


class StaticTokenCredential:
    """A TokenCredential that always gives the same bearer token, and counts how often it was asked."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0
        self.closed = False

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """Return the fixed token, valid for an hour."""
        self.calls += 1
        return AccessToken(self.token, int(time.time()) + 3600)

    def close(self) -> None:
        """Remember that the credential was closed."""
        self.closed = True


def verify_signature(public_key: rsa.RSAPublicKey, algorithm: str, signing_input: bytes, signature: bytes) -> None:
    """Check a signature outside Key Vault and outside the signer: RSASSA-PKCS1-v1_5 with cryptography."""
    public_key.verify(signature, signing_input, padding.PKCS1v15(), _RS_HASHES[algorithm]())


class VaultError(Exception):
    """A Key Vault error answer: HTTP status, error code, message and inner error code."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": {"code": code, "message": message}}
        if inner is not None:
            self.body["error"]["innererror"] = {"code": inner}


class FakeKeyVault:
    """A running fake vault; use as a context manager, or :meth:`start` and :meth:`stop`."""

    def __init__(self, directory: Path) -> None:
        self._lock = threading.Lock()
        self.keys: dict[str, list[KeyVersion]] = {}
        self.certificates: dict[str, list[CertificateVersion]] = {}
        self.callers: dict[str, Caller] = {}
        self.requests: list[RecordedRequest] = []
        self.sign_count = 0
        self.sign_delay = 0.0  # seconds each sign takes, to show that asign does not block the event loop
        self._ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._ca = make_certificate(
            "maskinporten-auth test CA", self._ca_key.public_key(), signing_key=self._ca_key, ca=True
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = make_certificate(
            "localhost",
            server_key.public_key(),
            issuer=(self._ca, self._ca_key),
            san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = str(directory / "akv-ca.pem")
        Path(self.ca_file).write_bytes(pem([self._ca]))
        cert_file, key_file = directory / "akv-server.pem", directory / "akv-server.key"
        cert_file.write_bytes(pem([server_cert]))
        key_file.write_bytes(
            server_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-key-vault", daemon=True)

    # --- lifecycle ---

    def start(self) -> FakeKeyVault:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeKeyVault:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def vault_url(self) -> str:
        """The vault's base URL on loopback."""
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    # --- administration, as az keyvault would do it ---

    def add_caller(self, token: str, permissions: Iterable[str] = ALL_PERMISSIONS, **kwargs: Any) -> Caller:
        """Let the bearer ``token`` in with ``permissions`` (``keys/get``, ``keys/sign``, ``certificates/get``)."""
        caller = Caller(frozenset(permissions), **kwargs)
        self.callers[token] = caller
        return caller

    def _add_key(self, name: str, private_key: Any, kty: str, key_ops: Iterable[str], enabled: bool) -> KeyVersion:
        key = KeyVersion(name, uuid.uuid4().hex, private_key, kty, list(key_ops), enabled)
        with self._lock:
            self.keys.setdefault(name, []).append(key)
        return key

    def create_rsa_key(
        self,
        name: str,
        *,
        size: int = 2048,
        hsm: bool = False,
        key_ops: Iterable[str] = DEFAULT_KEY_OPS,
        enabled: bool = True,
    ) -> KeyVersion:
        """Create a key, or a new current version of it (a rotation)."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=size)
        return self._add_key(name, private_key, "RSA-HSM" if hsm else "RSA", key_ops, enabled)

    def create_ec_key(self, name: str) -> KeyVersion:
        """Create an EC key, which cannot sign for Maskinporten."""
        return self._add_key(name, ec.generate_private_key(ec.SECP256R1()), "EC", ("sign", "verify"), True)

    def set_enabled(self, key: KeyVersion, enabled: bool) -> None:
        """Enable or disable a key version."""
        key.enabled = enabled

    def create_certificate(
        self, name: str, *, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey]
    ) -> CertificateVersion:
        """A certificate with a non-exportable RSA key generated in the vault, issued by ``issuer``."""
        key = self.create_rsa_key(name, key_ops=("sign", "verify"))
        certificate = make_certificate(f"{name} virksomhetssertifikat", key.public_key(), issuer=issuer)
        version = CertificateVersion(name, uuid.uuid4().hex, certificate, key.version)
        with self._lock:
            self.certificates.setdefault(name, []).append(version)
        return version

    def key_url(self, key: KeyVersion | str, versioned: bool = True) -> str:
        """The URL of a key (a key version, or a name), with or without its version."""
        if isinstance(key, str):
            return f"{self.vault_url}/keys/{key}"
        return f"{self.vault_url}/keys/{key.name}/{key.version}" if versioned else f"{self.vault_url}/keys/{key.name}"

    def sign_paths(self) -> list[str]:
        """The paths of the authorised sign requests received so far."""
        return [r.path for r in self.requests if r.method == "POST" and r.authorized]

    # --- the service ---

    def _find_key(self, name: str, version: str) -> KeyVersion:
        with self._lock:
            versions = self.keys.get(name, [])
            found = versions[-1:] if not version else [k for k in versions if k.version == version]
        if not found:
            raise VaultError(
                404,
                "KeyNotFound",
                f"A key with (name/id) {name}{'/' + version if version else ''} was not found in this key vault. "
                "If you recently deleted this key you may be able to recover it using the correct recovery command. "
                "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
            )
        return found[0]

    def _key_bundle(self, key: KeyVersion) -> dict[str, Any]:
        jwk: dict[str, Any] = {"kid": self.key_url(key), "kty": key.kty, "key_ops": key.key_ops}
        public = key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            jwk.update(n=_int_b64url(numbers.n), e=_int_b64url(numbers.e))
        else:
            point = public.public_numbers()
            size = (public.curve.key_size + 7) // 8
            jwk.update(crv="P-256", x=b64url(point.x.to_bytes(size, "big")), y=b64url(point.y.to_bytes(size, "big")))
        attributes = {
            "enabled": key.enabled,
            "created": key.created,
            "updated": key.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
            "exportable": False,
        }
        return {"key": jwk, "attributes": attributes}

    def _sign(self, key: KeyVersion, body: dict[str, Any]) -> dict[str, Any]:
        if not key.enabled:
            raise VaultError(403, "Forbidden", "Operation sign is not allowed on a disabled key.", "KeyDisabled")
        if "sign" not in key.key_ops:
            raise VaultError(403, "Forbidden", "Operation sign is not allowed on this key.", "KeyOperationForbidden")
        algorithm, value = body.get("alg"), body.get("value")
        if not isinstance(value, str):
            raise VaultError(400, "BadParameter", "Property 'value' is required.")
        digest = b64url_decode(value)
        hash_class = _RS_HASHES.get(str(algorithm))
        if hash_class is None or not isinstance(key.private_key, rsa.RSAPrivateKey):
            raise VaultError(400, "BadParameter", f"Key and signing algorithm '{algorithm}' are incompatible.")
        hash_algorithm = hash_class()
        if len(digest) != hash_algorithm.digest_size:
            raise VaultError(400, "BadParameter", "Invalid length of digest.")
        time.sleep(self.sign_delay)
        signature = key.private_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hash_algorithm))
        with self._lock:
            self.sign_count += 1
        return {"kid": self.key_url(key), "value": b64url(signature)}

    def _certificate_bundle(self, name: str, version: str) -> dict[str, Any]:
        with self._lock:
            versions = self.certificates.get(name, [])
            found = versions[-1:] if not version else [c for c in versions if c.version == version]
        if not found:
            raise VaultError(
                404, "CertificateNotFound", f"A certificate with (name/id) {name} was not found in this key vault."
            )
        cert = found[0]
        der = cert.certificate.public_bytes(serialization.Encoding.DER)
        base = self.vault_url
        bundle: dict[str, Any] = {
            "id": f"{base}/certificates/{name}/{cert.version}",
            "kid": f"{base}/keys/{name}/{cert.key_version}",
            "sid": f"{base}/secrets/{name}/{cert.version}",
            "x5t": b64url(hashlib.sha1(der, usedforsecurity=False).digest()),  # x5t is SHA-1 by definition
            "cer": base64.b64encode(der).decode("ascii"),
            "attributes": {
                "enabled": True,
                "created": int(time.time()),
                "updated": int(time.time()),
                "recoveryLevel": "Recoverable+Purgeable",
            },
        }
        if not version:
            bundle["policy"] = {
                "id": f"{base}/certificates/{name}/policy",
                "key_props": {"exportable": False, "kty": "RSA", "key_size": 2048, "reuse_key": False},
                "secret_props": {"contentType": "application/x-pkcs12"},
                "x509_props": {"subject": cert.certificate.subject.rfc4514_string(), "validity_months": 12},
                "issuer": {"name": "Unknown"},
                "attributes": {"enabled": True},
            }
        return bundle

    def _forbidden(self, caller: Caller, permission: str, resource: str) -> VaultError:
        if caller.model == "rbac":
            message = (
                "Caller is not authorized to perform action on resource.\r\n"
                "If role assignments, deny assignments or role definitions were changed recently, please observe "
                f"propagation time.\r\nCaller: oid={caller.object_id}\r\nAction: '{_RBAC_ACTIONS[permission]}'\r\n"
                f"Resource: '{resource}'\r\nAssignment: (not found)\r\nVault: fake;location=norwayeast\r\n"
            )
            return VaultError(403, "Forbidden", message, "ForbiddenByRbac")
        kind, operation = permission.split("/")
        message = (
            f"The user, group or application 'oid={caller.object_id}' does not have {kind} {operation} permission on "
            "key vault 'fake;location=norwayeast'. For help resolving this issue, please see "
            "https://go.microsoft.com/fwlink/?linkid=2125287"
        )
        return VaultError(403, "Forbidden", message, "AccessDenied")

    def handle(
        self, method: str, path: str, authorization: str | None, body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        """Answer one request: (status, JSON body). Raises VaultError for Key Vault's error answers."""
        token = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
        with self._lock:
            self.requests.append(RecordedRequest(method, path, token is not None))
        if token is None:
            raise _Challenge("AKV10000: Request is missing a Bearer or PoP token.")
        caller = self.callers.get(token)
        if caller is None:
            raise _Challenge("AKV10032: Invalid issuer. The token is not valid for this vault.")
        segments = path.split("/")[1:]  # /keys/{name}/{version}/sign; the version may be empty (the current one)
        if len(segments) > 4:
            raise VaultError(400, "BadParameter", f"The request URI {path} is invalid.")
        collection, name, version, action = [*segments, "", "", ""][:4]
        if collection == "keys" and method == "GET" and not action:
            if "keys/get" not in caller.permissions:
                raise self._forbidden(caller, "keys/get", path)
            return 200, self._key_bundle(self._find_key(name, version))
        if collection == "keys" and method == "POST" and action == "sign":
            if "keys/sign" not in caller.permissions:
                raise self._forbidden(caller, "keys/sign", path)
            request = json.loads(body or b"{}")
            return 200, self._sign(self._find_key(name, version), request)
        if collection == "certificates" and method == "GET" and not action:
            if "certificates/get" not in caller.permissions:
                raise self._forbidden(caller, "certificates/get", path)
            return 200, self._certificate_bundle(name, version)
        raise VaultError(400, "BadParameter", f"The request {method} {path} is not supported by this test vault.")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of connections (a 1 s SYN retry each)


class _Challenge(Exception):
    """Unauthenticated: 401 with Key Vault's ``WWW-Authenticate`` challenge."""


def _handler_for(vault: FakeKeyVault) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # one request, one response: no 40 ms delayed-ACK stalls

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read :attr:`FakeKeyVault.requests` instead."""

        def _answer(self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            if "api-version" not in parse_qs(url.query):
                self._answer(400, {"error": {"code": "BadParameter", "message": "api-version is required"}})
                return
            try:
                status, answer = vault.handle(self.command, url.path, self.headers.get("Authorization"), body)
            except _Challenge as exc:
                self._answer(
                    401, {"error": {"code": "Unauthorized", "message": str(exc)}}, {"WWW-Authenticate": CHALLENGE}
                )
            except VaultError as exc:
                self._answer(exc.status, exc.body)
            else:
                self._answer(status, answer)

        do_GET = do_POST = _dispatch

    return Handler
