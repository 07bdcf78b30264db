"""Certificate chains for enterprise certificates (virksomhetssertifikat) and the grant's ``x5c`` header."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .errors import ConfigurationError

__all__ = ["CertificateChain", "organisation_number"]


def organisation_number(certificate: x509.Certificate) -> str | None:
    """The organisation number in a Norwegian enterprise certificate's subject, if any.

    SEID 2 certificates carry it in ``organizationIdentifier`` (``NTRNO-<orgno>``), older ones in ``serialNumber``.
    """
    for oid in (NameOID.ORGANIZATION_IDENTIFIER, NameOID.SERIAL_NUMBER):
        for attribute in certificate.subject.get_attributes_for_oid(oid):
            digits = "".join(character for character in str(attribute.value) if character.isdigit())
            if len(digits) >= 9:
                return digits[-9:]
    return None


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``certificate`` (its name matches and its key verifies the signature)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _same_public_key(a: object, b: rsa.RSAPublicKey) -> bool:
    return isinstance(a, rsa.RSAPublicKey) and a.public_numbers() == b.public_numbers()


class CertificateChain:
    """An enterprise certificate and its chain, leaf first, as sent in ``x5c``.

    Construction checks that every certificate is valid now; :meth:`check_key` checks that the leaf certifies a
    given public key.
    """

    def __init__(self, certificates: Sequence[x509.Certificate], *, field: str = "certificate_chain") -> None:
        if not certificates:
            raise ConfigurationError(field, "contains no certificate")
        self.field = field
        self.certificates = list(certificates)
        now = datetime.datetime.now(datetime.timezone.utc)
        for certificate in self.certificates:
            subject = certificate.subject.rfc4514_string()
            if certificate.not_valid_before_utc > now:
                raise ConfigurationError(
                    field, f"certificate {subject!r} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d}"
                )
            if certificate.not_valid_after_utc < now:
                raise ConfigurationError(
                    field, f"certificate {subject!r} expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
                )

    @classmethod
    def from_pem(cls, data: bytes | str, *, field: str = "certificate_chain") -> CertificateChain:
        """Parse PEM certificates, the leaf (the key's own certificate) first."""
        raw = data.encode("ascii") if isinstance(data, str) else data
        try:
            certificates = x509.load_pem_x509_certificates(raw)
        except ValueError as exc:
            raise ConfigurationError(field, f"is not a PEM certificate chain: {exc}") from None
        return cls(certificates, field=field)

    @classmethod
    def of_leaf(
        cls,
        leaf: x509.Certificate,
        *,
        intermediates: bytes | str | None = None,
        pool: Sequence[x509.Certificate] = (),
        field: str = "certificate",
    ) -> CertificateChain:
        """The chain of ``leaf``, followed by its issuers.

        The issuers are ``intermediates`` (PEM, the leaf's issuer first) when given, otherwise the certificates
        among ``pool`` that issued the leaf, its issuer, and so on. An issuer is recognised by its signature, not
        only its name: a store may hold several generations of a CA.
        """
        if intermediates:
            return cls([leaf, *cls.from_pem(intermediates, field="intermediates").certificates], field=field)
        chain = [leaf]
        while chain[-1].issuer != chain[-1].subject:
            issuer = next((cert for cert in pool if cert not in chain and issued_by(chain[-1], cert)), None)
            if issuer is None:
                break
            chain.append(issuer)
        return cls(chain, field=field)

    @property
    def leaf(self) -> x509.Certificate:
        """The certificate of the signing key."""
        return self.certificates[0]

    @property
    def x5c(self) -> list[str]:
        """The chain as the ``x5c`` header wants it: standard base64 of each DER certificate, leaf first."""
        return [
            base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
            for cert in self.certificates
        ]

    def expires(self) -> datetime.datetime:
        """When the first certificate in the chain expires."""
        return min(cert.not_valid_after_utc for cert in self.certificates)

    def check_key(self, public_key: rsa.RSAPublicKey) -> None:
        """Raise :class:`ConfigurationError` unless the leaf certificate certifies ``public_key``."""
        if not _same_public_key(self.leaf.public_key(), public_key):
            raise ConfigurationError(
                self.field,
                f"the certificate {self.leaf.subject.rfc4514_string()!r} does not match the signing key",
            )
