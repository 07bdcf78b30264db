"""Pkcs11Signer: the grant is signed on a PKCS#11 token (an on-premises HSM, a smart card, SoftHSM2)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import quote

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError, SigningError
from maskinporten_auth.signer import Signer, check_key_size

from .errors import BACKEND, REMOVED_HINT, signing_error
from .module import Pin, SessionLost, TokenSelector, module

__all__ = ["Pkcs11Signer"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_MECHANISMS: Final = {
    "RS256": Mechanism.SHA256_RSA_PKCS,
    "RS384": Mechanism.SHA384_RSA_PKCS,
    "RS512": Mechanism.SHA512_RSA_PKCS,
}
_TOKEN_LABEL_BYTES: Final = 32
_NEW_KEY_HINT: Final = (
    "generate the key on the token so that it can never leave it (CKA_SENSITIVE true, CKA_EXTRACTABLE false), e.g. "
    "pkcs11-tool --keypairgen --key-type rsa:3072 --sensitive --private --login --label <label> --id <id>; "
    "then register its public JWK (maskinporten jwk 'pkcs11:...')"
)


def _validate_library_path(value: object) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ConfigurationError("library_path", f"must be the path of the PKCS#11 module (.so), got {value!r}")
    path = os.fspath(value)
    if not isinstance(path, str) or not Path(path).is_file():
        raise ConfigurationError("library_path", f"no PKCS#11 module (shared library) at {path!r}")
    return path


def _validate_token(token_label: object, slot: object) -> TokenSelector:
    if (token_label is None) == (slot is None):
        raise ConfigurationError("token_label", "give exactly one of token_label and slot")
    if slot is not None:
        if isinstance(slot, bool) or not isinstance(slot, int) or slot < 0:
            raise ConfigurationError("slot", f"must be a slot id (a non-negative integer), got {slot!r}")
        return TokenSelector(slot=slot)
    if not isinstance(token_label, str) or not token_label or len(token_label.encode()) > _TOKEN_LABEL_BYTES:
        raise ConfigurationError("token_label", f"must be a token label of 1 to 32 bytes, got {token_label!r}")
    return TokenSelector(label=token_label)


def _validate_key(key_label: object, key_id: object) -> tuple[str | None, bytes | None]:
    if key_label is None and key_id is None:
        raise ConfigurationError("key_label", "give key_label, key_id or both to name the private key")
    if key_label is not None and (not isinstance(key_label, str) or not key_label):
        raise ConfigurationError("key_label", f"must be a non-empty string, got {key_label!r}")
    if isinstance(key_id, str):
        try:
            key_id = bytes.fromhex(key_id)
        except ValueError:
            raise ConfigurationError("key_id", f"must be bytes or a hexadecimal string, got {key_id!r}") from None
    if key_id is not None and (not isinstance(key_id, bytes) or not key_id):
        raise ConfigurationError("key_id", f"must be non-empty bytes or a hexadecimal string, got {key_id!r}")
    return key_label, key_id


def _read_pin(pin: object, pin_file: object) -> Pin:
    if (pin is None) == (pin_file is None):
        raise ConfigurationError("pin", "give exactly one of pin and pin_file")
    if pin_file is not None:
        if not isinstance(pin_file, (str, os.PathLike)):
            raise ConfigurationError("pin_file", f"must be a path, got a {type(pin_file).__name__}")
        try:
            data = Path(pin_file).read_bytes()
        except OSError as exc:
            raise ConfigurationError("pin_file", f"cannot read {os.fspath(pin_file)!r}: {exc.strerror}") from None
        try:
            pin = data.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError("pin_file", f"{os.fspath(pin_file)!r} is not UTF-8 text") from None
    if not isinstance(pin, str) or not pin:
        field = "pin" if pin_file is None else "pin_file"
        raise ConfigurationError(field, "the PIN is empty" if pin == "" else "the PIN must be a string")
    return Pin(pin)


class Pkcs11Signer(Signer):
    """Signs grants with an RSA key on a PKCS#11 token; the private key never leaves the token.

    The token signs with ``CKM_SHA256_RSA_PKCS`` (``CKM_SHA384_RSA_PKCS``, ``CKM_SHA512_RSA_PKCS`` for RS384 and
    RS512): RSASSA-PKCS1-v1_5, hashing on the device. Nothing here ever reads the private key: on first use (or
    :meth:`verify_key`) the key's public attributes are read, and a key that is not RSA, may not sign, is shorter
    than 2048 bits, or could be exported (``CKA_EXTRACTABLE`` true or ``CKA_SENSITIVE`` false) is refused.

    Every call into a module is serialised (python-pkcs11 initialises modules without locking, and SoftHSM2 then
    turns its own locks off); each token has one logged-in session, shared by the signers of the process, reopened
    after a fork or when the token comes back. :meth:`asign` and :meth:`averify_key` run in a worker thread.

    Args:
        library_path: the vendor's PKCS#11 module, e.g. ``/usr/lib/softhsm/libsofthsm2.so``.
        token_label: the token's label; or give ``slot``, its slot id.
        slot: the slot id of the token (when labels are not unique).
        key_label: the private key's ``CKA_LABEL``; ``key_id`` (bytes, or hex) its ``CKA_ID``; one or both.
        key_id: see ``key_label``.
        pin: the user PIN; or ``pin_file``, a file holding it (one line). It never appears in a repr, a log
            line or an exception.
        pin_file: see ``pin``.
        kid: the key id registered on the Maskinporten integration.
        algorithm: RS256, RS384 or RS512.
        certificate_chain: PEM certificates, leaf first, sent as ``x5c`` instead of ``kid``; see also
            :meth:`from_token_certificate` for a certificate stored on the token.

    The token, the key and the PIN are checked on first use; failures raise
    :class:`~maskinporten_auth.errors.SigningError` with a hint (wrong or locked PIN, no such token or key,
    token removed).
    """

    backend = BACKEND

    def __init__(
        self,
        library_path: str | os.PathLike[str],
        *,
        token_label: str | None = None,
        slot: int | None = None,
        key_label: str | None = None,
        key_id: bytes | str | None = None,
        pin: str | None = None,
        pin_file: str | os.PathLike[str] | None = None,
        kid: str | None = None,
        algorithm: str = "RS256",
        certificate_chain: bytes | str | CertificateChain | None = None,
    ) -> None:
        self._configure(algorithm, kid, certificate_chain)
        self.library_path = _validate_library_path(library_path)
        self.token = _validate_token(token_label, slot)
        self.key_label, self.key_id = _validate_key(key_label, key_id)
        self._pin = _read_pin(pin, pin_file)
        self._module = module(self.library_path)
        self._public_key: rsa.RSAPublicKey | None = None
        self._key: tuple[pkcs11.Session, pkcs11.SignMixin] | None = None  # only touched under the module's lock

    @classmethod
    def from_token_certificate(
        cls,
        library_path: str | os.PathLike[str],
        *,
        token_label: str | None = None,
        slot: int | None = None,
        key_label: str | None = None,
        key_id: bytes | str | None = None,
        pin: str | None = None,
        pin_file: str | os.PathLike[str] | None = None,
        algorithm: str = "RS256",
        intermediates: bytes | str | None = None,
    ) -> Pkcs11Signer:
        """Sign with the key of an enterprise certificate (virksomhetssertifikat) stored on the token.

        The certificate is the ``CKO_CERTIFICATE`` object with the private key's ``CKA_ID`` (or, for a key without
        one, its label); it is read now, and sent as ``x5c`` followed by its issuers: ``intermediates`` (PEM) when
        given, otherwise the issuing certificates found on the token. The key must match the certificate.
        """
        signer = cls(
            library_path,
            token_label=token_label,
            slot=slot,
            key_label=key_label,
            key_id=key_id,
            pin=pin,
            pin_file=pin_file,
            algorithm=algorithm,
        )
        leaf, on_token = signer._call("reading the certificate", signer._token_certificates)
        signer._certify(
            CertificateChain.of_leaf(leaf, intermediates=intermediates, pool=on_token), "the token's certificate"
        )
        return signer

    # --- identity and repr: configuration only, never the device -------------------------------------------------

    @property
    def key_name(self) -> str:
        """The key as an RFC 7512 URI path (token, label, id), for messages: ``pkcs11:token=HSM;object=mp``."""
        parts = [f"slot-id={self.token.slot}" if self.token.label is None else f"token={quote(self.token.label)}"]
        if self.key_label is not None:
            parts.append(f"object={quote(self.key_label)}")
        if self.key_id is not None:
            parts.append(f"id={quote(self.key_id)}")
        return "pkcs11:" + ";".join(parts)

    @property
    def key_identity(self) -> str:
        """The module, token and key as configured, and the kid or the leaf certificate's SHA-256; no device I/O."""
        if self.certificate_chain is not None:
            leaf = self.certificate_chain.leaf.public_bytes(serialization.Encoding.DER)
            shown = f"x5t#S256={hashlib.sha256(leaf).hexdigest()}"
        else:
            shown = f"kid={self.kid}"
        return f"{self.key_name}?module-path={quote(self.library_path)}&{shown}"

    def _repr_fields(self) -> list[str]:
        return [f"{self.library_path!r}", f"key={self.key_name!r}", *super()._repr_fields()]

    # --- the device ------------------------------------------------------------------------------------------------

    def _call(self, action: str, operation: Callable[[pkcs11.SignMixin], _T]) -> _T:
        """Run ``operation(private key)`` in the token's session; the module's failures become SigningError."""

        def with_key(session: pkcs11.Session) -> _T:
            if self._key is None or self._key[0] is not session:
                self._key = (session, self._find_key(session))
            return operation(self._key[1])

        try:
            return self._module.call(self.token, self._pin, with_key)
        except SessionLost as exc:
            raise signing_error(
                exc.second,
                action=f"{action} (the session was lost: {type(exc.first).__name__})",
                key=self.key_name,
                hint=REMOVED_HINT,
            ) from exc
        except p11.PKCS11Error as exc:
            raise signing_error(exc, action=action, key=self.key_name) from exc

    def _find_key(self, session: pkcs11.Session) -> pkcs11.SignMixin:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=self.key_label, id=self.key_id)
        if not isinstance(key, pkcs11.SignMixin):
            raise SigningError("the private key object cannot sign", backend=BACKEND, key=self.key_name)
        logger.debug("found the private key %s in a new session", self.key_name)
        return key

    def _token_certificates(self, key: pkcs11.SignMixin) -> tuple[x509.Certificate, list[x509.Certificate]]:
        """The certificate with the key's CKA_ID (else its label), and every certificate on the token."""
        key_id: bytes = key[Attribute.ID] or b""
        match = {Attribute.ID: key_id} if key_id else {Attribute.LABEL: key[Attribute.LABEL]}
        session = key.session
        found = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, **match}))
        if len(found) != 1:
            by = f"the key's CKA_ID {key_id.hex()}" if key_id else f"the key's label {key[Attribute.LABEL]!r}"
            problem = "no certificate" if not found else f"{len(found)} certificates"
            raise ConfigurationError("certificate", f"{self.key_name}: the token holds {problem} with {by}")
        everything = session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
        try:
            leaf = x509.load_der_x509_certificate(found[0][Attribute.VALUE])
            return leaf, [x509.load_der_x509_certificate(cert[Attribute.VALUE]) for cert in everything]
        except ValueError as exc:
            raise ConfigurationError("certificate", f"{self.key_name}: a certificate on the token: {exc}") from None

    def _checked_public_key(self, key: pkcs11.SignMixin) -> rsa.RSAPublicKey:
        """Check the key (RSA, may sign, never leaves the token, the mechanism) and return its public half."""
        if self._public_key is not None:  # another thread checked it while this one waited for the lock
            return self._public_key
        wanted = [Attribute.KEY_TYPE, Attribute.SIGN, Attribute.SENSITIVE, Attribute.EXTRACTABLE]
        attributes = key.get_attributes([*wanted, Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        if attributes.get(Attribute.KEY_TYPE) != KeyType.RSA:
            raise SigningError("is not an RSA key; Maskinporten needs RSA", backend=BACKEND, key=self.key_name,
                               hint=_NEW_KEY_HINT)  # fmt: skip
        if attributes.get(Attribute.EXTRACTABLE) is not False or attributes.get(Attribute.SENSITIVE) is not True:
            raise SigningError(
                "the private key could leave the token (CKA_EXTRACTABLE is "
                f"{attributes.get(Attribute.EXTRACTABLE)}, CKA_SENSITIVE is {attributes.get(Attribute.SENSITIVE)}); "
                "refusing to sign with it",
                backend=BACKEND,
                key=self.key_name,
                hint=_NEW_KEY_HINT,
            )
        if attributes.get(Attribute.SIGN) is not True:
            raise SigningError("the key may not sign (CKA_SIGN is false)", backend=BACKEND, key=self.key_name,
                               hint=_NEW_KEY_HINT)  # fmt: skip
        mechanism = _MECHANISMS[self.algorithm]
        if mechanism not in key.session.token.slot.get_mechanisms():
            raise SigningError(
                f"the token does not offer {mechanism.name} for {self.algorithm}",
                backend=BACKEND,
                key=self.key_name,
                hint="choose an algorithm the token supports (RS256 is the most common)",
            )
        modulus, exponent = attributes.get(Attribute.MODULUS), attributes.get(Attribute.PUBLIC_EXPONENT)
        if not modulus or not exponent:
            raise SigningError("the token does not show the key's modulus and public exponent", backend=BACKEND,
                               key=self.key_name)  # fmt: skip
        public_key = rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()
        check_key_size(public_key, "key", self.key_name)
        if self.certificate_chain is not None:
            self.certificate_chain.check_key(public_key)
        self._public_key = public_key
        return public_key

    def verify_key(self) -> None:
        """Check the key once (RSA, may sign, not extractable, matching the certificate) and keep its public half."""
        self.public_key()

    async def averify_key(self) -> None:
        """:meth:`verify_key` in a worker thread, so that the event loop is never blocked."""
        if self._public_key is None:
            await asyncio.to_thread(self.verify_key)

    def public_key(self) -> rsa.RSAPublicKey:
        """Return the key's public half, read from the token once (after checking the key)."""
        if self._public_key is None:
            return self._call("checking the key", self._checked_public_key)
        return self._public_key

    def sign(self, signing_input: bytes) -> bytes:
        """Have the token sign ``signing_input`` with RSASSA-PKCS1-v1_5 and the algorithm's hash."""
        self.verify_key()
        mechanism = _MECHANISMS[self.algorithm]
        return self._call("signing", lambda key: key.sign(signing_input, mechanism=mechanism))
