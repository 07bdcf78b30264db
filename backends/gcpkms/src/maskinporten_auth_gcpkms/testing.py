"""A Cloud KMS of the project's own for tests and benchmarks: Cloud KMS's REST API on loopback, with real keys.

No Cloud KMS emulator that signs installs on the project's machines, so the backend's tests and the signer
benchmark drive the official ``google-cloud-kms`` client, REST transport, against this server
(:func:`make_kms_client`). It speaks what that transport sends and expects:

- ``POST /v1/{name}:asymmetricSign`` with ``digest`` (``sha256``, ``sha384`` or ``sha512``) and ``digestCrc32c``,
  or ``data`` and ``dataCrc32c``; the answer carries ``signature``, ``signatureCrc32c``,
  ``verifiedDigestCrc32c``/``verifiedDataCrc32c`` and ``name``, each CRC32C computed with google-crc32c as Google
  computes it;
- ``GET /v1/{name}/publicKey`` (``pem``, ``algorithm``, ``pemCrc32c``, ``name``) and ``GET /v1/{name}`` (the
  CryptoKeyVersion);
- real RSA and EC keys made with ``cryptography``, for the key version algorithms Cloud KMS has for signing
  (``RSA_SIGN_PKCS1_*``, ``RSA_SIGN_RAW_PKCS1_*``, ``RSA_SIGN_PSS_*``, ``EC_SIGN_*``), and the key version states
  ``ENABLED``, ``DISABLED``, ``DESTROY_SCHEDULED`` and ``DESTROYED``;
- IAM: each caller (anonymous, or a bearer token) holds roles; a call without the permission it needs gets
  ``PERMISSION_DENIED``, as Google words it;
- Google's error body ``{"error": {"code", "message", "status", "details"}}`` with the HTTP status of its code;
- the metadata server's ping and service-account token endpoints (``/computeMetadata/v1/...``), so that
  Application Default Credentials find a workload identity there (with ``GCE_METADATA_HOST`` and
  ``GCE_METADATA_IP`` set to the server's address before google-auth is imported: :meth:`FakeCloudKms.environ`),
  as they do on GKE and NAIS.

Faults a real KMS shows rarely can be injected per key version (:meth:`FakeCloudKms.inject`): a corrupted
signature or checksum, another key version's name, an unverified digest checksum, an exhausted quota.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import google_crc32c
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .signer import ENDPOINT_VARIABLE

__all__ = [
    "ANONYMOUS",
    "ENDPOINT_VARIABLE",
    "ROLES",
    "WORKLOAD",
    "FakeCloudKms",
    "FakeKeyVersion",
    "Fault",
    "KmsError",
    "RecordedRequest",
    "make_kms_client",
]

#: The caller of a request without credentials (the client's ``AnonymousCredentials``).
ANONYMOUS = "anonymous"
#: The workload's service account, whose tokens the fake metadata server hands out.
WORKLOAD = "serviceAccount:maskinporten@nav-maskinporten.iam.gserviceaccount.com"

#: The permissions of the predefined Cloud KMS roles that matter here.
ROLES: dict[str, frozenset[str]] = {
    "roles/cloudkms.signerVerifier": frozenset(
        {
            "cloudkms.cryptoKeyVersions.useToSign",
            "cloudkms.cryptoKeyVersions.useToVerify",
            "cloudkms.cryptoKeyVersions.viewPublicKey",
        }
    ),
    "roles/cloudkms.signer": frozenset({"cloudkms.cryptoKeyVersions.useToSign"}),
    "roles/cloudkms.publicKeyViewer": frozenset({"cloudkms.cryptoKeyVersions.viewPublicKey"}),
    "roles/cloudkms.viewer": frozenset({"cloudkms.cryptoKeyVersions.get", "cloudkms.cryptoKeyVersions.list"}),
}

#: A fault injected into the answers for one key version.
Fault = Literal["signature", "signature_crc32c", "name", "unverified_checksum", "quota"]

# algorithm -> (scheme, RSA bits or EC curve, digest); RAW keys sign a DigestInfo built by the caller.
_ALGORITHMS: dict[str, tuple[str, Any, str | None]] = {
    "RSA_SIGN_PKCS1_2048_SHA256": ("pkcs1", 2048, "sha256"),
    "RSA_SIGN_PKCS1_3072_SHA256": ("pkcs1", 3072, "sha256"),
    "RSA_SIGN_PKCS1_4096_SHA256": ("pkcs1", 4096, "sha256"),
    "RSA_SIGN_PKCS1_4096_SHA512": ("pkcs1", 4096, "sha512"),
    "RSA_SIGN_RAW_PKCS1_2048": ("raw", 2048, None),
    "RSA_SIGN_RAW_PKCS1_3072": ("raw", 3072, None),
    "RSA_SIGN_RAW_PKCS1_4096": ("raw", 4096, None),
    "RSA_SIGN_PSS_2048_SHA256": ("pss", 2048, "sha256"),
    "RSA_SIGN_PSS_3072_SHA256": ("pss", 3072, "sha256"),
    "RSA_SIGN_PSS_4096_SHA256": ("pss", 4096, "sha256"),
    "RSA_SIGN_PSS_4096_SHA512": ("pss", 4096, "sha512"),
    "EC_SIGN_P256_SHA256": ("ec", ec.SECP256R1(), "sha256"),
    "EC_SIGN_P384_SHA384": ("ec", ec.SECP384R1(), "sha384"),
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
}
_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_VERSION_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+/cryptoKeyVersions/[^/]+")


def _crc32c(data: bytes) -> str:
    """CRC32C as Cloud KMS sends it: an int64, which proto3 JSON writes as a decimal string."""
    return str(google_crc32c.value(data))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    """Decode proto3 JSON bytes: standard or URL-safe base64, padded or not."""
    if not isinstance(text, str):
        raise KmsError("INVALID_ARGUMENT", "Invalid value for a bytes field.")
    standard = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(standard + "=" * (-len(standard) % 4))


def _timestamp(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KmsError(Exception):
    """An error answer of Cloud KMS: a canonical status (``PERMISSION_DENIED``, ...) and Google's message."""

    def __init__(self, status: str, message: str, details: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)

    @property
    def http_status(self) -> int:
        """The HTTP status Google answers this error with over REST."""
        return _HTTP_STATUS.get(self.status, 500)

    @property
    def body(self) -> dict[str, Any]:
        """Google's JSON error body."""
        error: dict[str, Any] = {"code": self.http_status, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


@dataclass
class FakeKeyVersion:
    """One CryptoKeyVersion: its resource name, algorithm, state and (real) private key."""

    name: str
    algorithm: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    state: str = "ENABLED"
    protection_level: str = "HSM"
    created: float = field(default_factory=time.time)

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The public half, for verifying signatures independently of the server."""
        return self.private_key.public_key()

    def public_pem(self) -> str:
        """The public key as Cloud KMS returns it: PEM SubjectPublicKeyInfo."""
        pem = self.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode("ascii")

    def resource(self) -> dict[str, Any]:
        """The CryptoKeyVersion resource, as ``GET /v1/{name}`` returns it."""
        return {
            "name": self.name,
            "state": self.state,
            "protectionLevel": self.protection_level,
            "algorithm": self.algorithm,
            "createTime": _timestamp(self.created),
            "generateTime": _timestamp(self.created),
        }


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received: what was asked, on which key version, by whom, from which client port."""

    method: str
    operation: str
    name: str
    caller: str | None
    peer: int


@dataclass(frozen=True)
class _Metadata:
    """An answer of the metadata server: status, body and content type."""

    status: int
    body: str
    content_type: str = "application/text"


class FakeCloudKms:
    """Cloud KMS's REST API for signing keys on ``http://127.0.0.1:<free port>``; a context manager.

    Every key version lives in ``projects/<project>/locations/<location>``. Callers hold roles (:data:`ROLES`);
    :data:`ANONYMOUS` (the client's anonymous credentials) and :data:`WORKLOAD` (the metadata server's service
    account) start with ``roles/cloudkms.signerVerifier``, the role the backend documents. ``sign_delay``
    (seconds) makes each signature take that long, as an HSM's does.
    """

    def __init__(
        self, *, project: str = "nav-maskinporten", location: str = "europe-north1", sign_delay: float = 0.0
    ) -> None:
        self.project = project
        self.location = location
        self.sign_delay = sign_delay
        self.sign_count = 0
        self.requests: list[RecordedRequest] = []
        self.callers: dict[str, set[str]] = {
            ANONYMOUS: {"roles/cloudkms.signerVerifier"},
            WORKLOAD: {"roles/cloudkms.signerVerifier"},
        }
        self._tokens: dict[str, str] = {}
        self._versions: dict[str, FakeKeyVersion] = {}
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> FakeCloudKms:
        """Listen on 127.0.0.1 and a free port, serving requests in threads."""
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-cloud-kms", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeCloudKms:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The server's base URL, ``http://127.0.0.1:<port>``: the client's ``api_endpoint``."""
        if self._server is None:
            raise RuntimeError("the fake Cloud KMS is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- administration, as gcloud kms would do it ---

    def create_key_version(
        self,
        key_ring: str,
        key: str,
        algorithm: str = "RSA_SIGN_PKCS1_2048_SHA256",
        *,
        protection_level: str = "HSM",
    ) -> FakeKeyVersion:
        """Create the next version of ``key`` in ``key_ring`` (version 1 of a new key), with a new private key."""
        scheme, size, _ = _ALGORITHMS[algorithm]
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if scheme == "ec":
            private_key = ec.generate_private_key(size)
        else:
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=size)
        prefix = f"projects/{self.project}/locations/{self.location}/keyRings/{key_ring}/cryptoKeys/{key}"
        with self._lock:
            number = 1 + sum(1 for name in self._versions if name.startswith(f"{prefix}/cryptoKeyVersions/"))
            version = FakeKeyVersion(
                f"{prefix}/cryptoKeyVersions/{number}", algorithm, private_key, protection_level=protection_level
            )
            self._versions[version.name] = version
        return version

    def set_state(self, version: FakeKeyVersion, state: str) -> None:
        """Move a key version to ``ENABLED``, ``DISABLED``, ``DESTROY_SCHEDULED`` or ``DESTROYED``."""
        version.state = state

    def token_for(self, caller: str) -> str:
        """A new bearer token for ``caller`` (use it with ``google.oauth2.credentials.Credentials(token)``)."""
        token = f"ya29.fake-{uuid.uuid4().hex}"
        with self._lock:
            self._tokens[token] = caller
        return token

    def environ(self) -> dict[str, str]:
        """The variables that send Application Default Credentials and the signer's own client here.

        They must be set before google-auth is imported, so they are for a child process (``maskinporten jwk``).
        """
        address = self.endpoint.removeprefix("http://")
        return {"GCE_METADATA_HOST": address, "GCE_METADATA_IP": address, ENDPOINT_VARIABLE: self.endpoint}

    def grant(self, caller: str, *roles: str) -> None:
        """Give ``caller`` (:data:`ANONYMOUS`, :data:`WORKLOAD` or another name) exactly ``roles`` from now on."""
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise ValueError(f"unknown roles: {unknown}")
        with self._lock:
            self.callers[caller] = set(roles)

    def inject(self, version: FakeKeyVersion, fault: Fault | None) -> None:
        """Corrupt the answers for ``version`` in the way ``fault`` says (None: answer correctly again)."""
        with self._lock:
            if fault is None:
                self._faults.pop(version.name, None)
            else:
                self._faults[version.name] = fault

    def operations(self, name: str | None = None) -> list[str]:
        """The operations (``asymmetricSign``, ``getPublicKey``, ``get``) received so far, optionally for ``name``."""
        with self._lock:
            return [r.operation for r in self.requests if name is None or r.name == name]

    # --- the service ---

    def metadata(self, path: str, flavor: str | None) -> _Metadata:
        """Answer a request to the metadata server: the ping, the project, the workload's account and its token."""
        account = "/computeMetadata/v1/instance/service-accounts/default/"
        if flavor != "Google":
            return _Metadata(403, "Missing required header: Metadata-Flavor")
        if path == "/":
            return _Metadata(200, "computeMetadata/\n")
        if path == "/computeMetadata/v1/project/project-id":
            return _Metadata(200, self.project)
        if path == account:
            info = {"email": WORKLOAD.split(":", 1)[1], "scopes": [_CLOUD_PLATFORM], "aliases": ["default"]}
            return _Metadata(200, json.dumps(info), "application/json")
        if path == f"{account}token":
            token = {"access_token": self.token_for(WORKLOAD), "expires_in": 3599, "token_type": "Bearer"}
            return _Metadata(200, json.dumps(token), "application/json")
        return _Metadata(404, "Not Found")

    def _authorize(self, caller: str | None, permission: str, name: str) -> None:
        if caller is None or caller not in self.callers:
            raise KmsError(
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            )
        with self._lock:
            granted = set().union(*(ROLES[role] for role in self.callers[caller]))
        if permission not in granted:
            raise KmsError(
                "PERMISSION_DENIED",
                f"Permission '{permission}' denied on resource '{name}' (or it may not exist).",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "IAM_PERMISSION_DENIED",
                        "domain": "cloudkms.googleapis.com",
                        "metadata": {"permission": permission, "resource": name},
                    }
                ],
            )

    def _find(self, name: str, *, enabled: bool) -> FakeKeyVersion:
        with self._lock:
            version = self._versions.get(name)
            fault = self._faults.get(name)
        if version is None:
            raise KmsError("NOT_FOUND", f"CryptoKeyVersion {name} not found.")
        if fault == "quota":
            raise KmsError(
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Asymmetric cryptographic requests' and limit 'Asymmetric "
                f"cryptographic requests per minute per region' of service 'cloudkms.googleapis.com' for consumer "
                f"'project_number:{abs(hash(self.project)) % 10**12}'.",
            )
        if enabled and version.state != "ENABLED":
            raise KmsError("FAILED_PRECONDITION", f"{name} is not enabled, current state is: {version.state}.")
        return version

    def _public_key(self, version: FakeKeyVersion) -> dict[str, Any]:
        pem = version.public_pem()
        return {
            "pem": pem,
            "algorithm": version.algorithm,
            "pemCrc32c": _crc32c(pem.encode("ascii")),
            "name": version.name,
            "protectionLevel": version.protection_level,
        }

    def _sign(self, version: FakeKeyVersion, request: dict[str, Any]) -> dict[str, Any]:
        scheme, _, hash_name = _ALGORITHMS[version.algorithm]
        if "digest" in request and "data" in request:
            raise KmsError("INVALID_ARGUMENT", "Only one of digest or data may be specified.")
        if "digest" in request:
            if scheme == "raw":
                raise KmsError("INVALID_ARGUMENT", f"Algorithm {version.algorithm} requires data, not a digest.")
            digests = request["digest"] if isinstance(request["digest"], dict) else {}
            if list(digests) != [hash_name]:
                raise KmsError("INVALID_ARGUMENT", f"The digest type does not match the algorithm {version.algorithm}.")
            payload, checksum, checked = _unb64(digests[hash_name]), request.get("digestCrc32c"), "digest"
        elif "data" in request:
            payload, checksum, checked = _unb64(request["data"]), request.get("dataCrc32c"), "data"
        else:
            raise KmsError("INVALID_ARGUMENT", "One of digest or data must be specified.")
        if checksum is not None and str(checksum) != _crc32c(payload):
            raise KmsError(
                "INVALID_ARGUMENT", f"The checksum in field {checked}_crc32c did not match the data in field {checked}."
            )
        time.sleep(self.sign_delay)
        signature = _signature(version, scheme, hash_name, payload, prehashed=checked == "digest")
        with self._lock:
            self.sign_count += 1
            fault = self._faults.get(version.name)
        answer: dict[str, Any] = {
            "signature": _b64(signature),
            "signatureCrc32c": _crc32c(signature),
            "verifiedDigestCrc32c": checked == "digest" and checksum is not None,
            "verifiedDataCrc32c": checked == "data" and checksum is not None,
            "name": version.name,
            "protectionLevel": version.protection_level,
        }
        if fault == "signature":
            answer["signature"] = _b64(signature[:-1] + bytes([signature[-1] ^ 1]))
        elif fault == "signature_crc32c":
            answer["signatureCrc32c"] = str((int(answer["signatureCrc32c"]) + 1) % 2**32)
        elif fault == "name":
            answer["name"] = re.sub(r"/cryptoKeyVersions/[^/]+$", "/cryptoKeyVersions/999", version.name)
        elif fault == "unverified_checksum":
            answer["verifiedDigestCrc32c"] = answer["verifiedDataCrc32c"] = False
        return answer

    def handle(self, method: str, path: str, authorization: str | None, body: bytes, peer: int = 0) -> dict[str, Any]:
        """Answer one request with its JSON body; raise :class:`KmsError` for Cloud KMS's error answers."""
        token = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
        resource = path.removeprefix("/v1/")
        operation = "get"
        if method == "POST" and resource.endswith(":asymmetricSign"):
            operation, resource = "asymmetricSign", resource.removesuffix(":asymmetricSign")
        elif method == "GET" and resource.endswith("/publicKey"):
            operation, resource = "getPublicKey", resource.removesuffix("/publicKey")
        with self._lock:
            caller = self._tokens.get(token) if token is not None else (ANONYMOUS if authorization is None else None)
            self.requests.append(RecordedRequest(method, operation, resource, caller, peer))
        if not _VERSION_NAME.fullmatch(resource) or (operation, method) == ("get", "POST"):
            raise KmsError("UNIMPLEMENTED", f"The fake Cloud KMS does not serve {method} {path}.")
        if operation == "asymmetricSign":
            self._authorize(caller, "cloudkms.cryptoKeyVersions.useToSign", resource)
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise KmsError("INVALID_ARGUMENT", "Invalid JSON payload received.") from None
            if request.get("name", resource) != resource:
                raise KmsError("INVALID_ARGUMENT", "The name in the body does not match the name in the URL.")
            return self._sign(self._find(resource, enabled=True), request)
        if operation == "getPublicKey":
            self._authorize(caller, "cloudkms.cryptoKeyVersions.viewPublicKey", resource)
            return self._public_key(self._find(resource, enabled=True))
        self._authorize(caller, "cloudkms.cryptoKeyVersions.get", resource)
        return self._find(resource, enabled=False).resource()


def _signature(
    version: FakeKeyVersion, scheme: str, hash_name: str | None, payload: bytes, *, prehashed: bool
) -> bytes:
    """Sign as the key version's algorithm says: ``payload`` is a digest, the data, or (RAW) a DigestInfo."""
    key = version.private_key
    if scheme == "raw":
        assert isinstance(key, rsa.RSAPrivateKey)
        return _raw_pkcs1_sign(key, payload)
    assert hash_name is not None
    hash_algorithm: hashes.HashAlgorithm = _HASHES[hash_name]()
    if prehashed and len(payload) != hash_algorithm.digest_size:
        raise KmsError("INVALID_ARGUMENT", f"The digest must be {hash_algorithm.digest_size} bytes.")
    signed: hashes.HashAlgorithm | utils.Prehashed = utils.Prehashed(hash_algorithm) if prehashed else hash_algorithm
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(signed))
    if scheme == "pss":
        pss = padding.PSS(mgf=padding.MGF1(_HASHES[hash_name]()), salt_length=hash_algorithm.digest_size)
        return key.sign(payload, pss, signed)
    return key.sign(payload, padding.PKCS1v15(), signed)


def _raw_pkcs1_sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 without encoding (RSA_SIGN_RAW_PKCS1_*): pad ``data`` with type 1 and exponentiate."""
    size = (key.key_size + 7) // 8
    if len(data) > size - 11:
        raise KmsError("INVALID_ARGUMENT", f"The data must be at most {size - 11} bytes for this key.")
    encoded = b"\x00\x01" + b"\xff" * (size - 3 - len(data)) + b"\x00" + data
    numbers = key.private_numbers()
    value = pow(int.from_bytes(encoded, "big"), numbers.d, numbers.public_numbers.n)
    return value.to_bytes(size, "big")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of connections (a 1 s SYN retry each)


def _handler_for(kms: FakeCloudKms) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # one request, one response: no 40 ms delayed-ACK stalls

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read :attr:`FakeCloudKms.requests` instead."""

        def _answer(self, status: int, body: dict[str, Any] | str, content_type: str = "application/json") -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=UTF-8")
            if isinstance(body, str):
                self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            if not path.startswith("/v1/"):
                metadata = kms.metadata(path, self.headers.get("Metadata-Flavor"))
                self._answer(metadata.status, metadata.body, metadata.content_type)
                return
            try:
                answer = kms.handle(self.command, path, self.headers.get("Authorization"), body, self.client_address[1])
            except KmsError as exc:
                self._answer(exc.http_status, exc.body)
            else:
                self._answer(200, answer)

        do_GET = do_POST = _dispatch

    return Handler


def make_kms_client(endpoint: str, credentials: Any = None) -> Any:
    """The official ``KeyManagementServiceClient`` for the fake at ``endpoint``: REST transport over http.

    ``credentials`` default to ``AnonymousCredentials`` (the :data:`ANONYMOUS` caller); a
    ``google.oauth2.credentials.Credentials(token)`` is the caller ``token``.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import kms

    return kms.KeyManagementServiceClient(
        credentials=credentials if credentials is not None else AnonymousCredentials(),  # type: ignore[no-untyped-call]
        transport="rest",
        client_options={"api_endpoint": endpoint},
    )
