"""The RFC 7512 key URI ``pkcs11:token=...;object=...;type=private?module-path=...&pin-source=file:...``.

Path attributes (``;``-separated): ``token`` (the token label) or ``slot-id``; ``object`` (the key's label) and/or
``id`` (its CKA_ID, percent-encoded bytes such as ``%01%02``); ``type``, ``private`` (the default) or ``cert``.
Query attributes (``&``-separated): ``module-path`` (required) and ``pin-source`` (a ``file:`` URI or an absolute
path). ``pin-value`` is refused: a key URI ends up in process listings, shell history and error messages.
"""

from __future__ import annotations

import os
from typing import Any, Final
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError
from maskinporten_auth.signer import refuse_kid_with_certificate

from .signer import Pkcs11Signer

__all__ = ["parse_uri", "signer_from_uri"]

_FORM: Final = "pkcs11:token=<label>;object=<key label>?module-path=<module .so>&pin-source=file:<pin file>"
_PATH_ATTRIBUTES: Final = ("token", "slot-id", "object", "id", "type")
_QUERY_ATTRIBUTES: Final = ("module-path", "pin-source", "pin-value")
_TYPES: Final = ("private", "cert")


def _attributes(text: str, separator: str, known: tuple[str, ...], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in text.split(separator) if text else []:
        name, equals, value = item.partition("=")
        if not equals:
            raise ConfigurationError("key", f"the {where} attribute {name!r} has no '='; expected {_FORM}")
        if name not in known:
            raise ConfigurationError(
                "key", f"unknown or unsupported {where} attribute {name!r}; this backend reads {', '.join(known)}"
            )
        if name in found:
            raise ConfigurationError("key", f"the attribute {name!r} is given twice")
        found[name] = value
    return found


def _pin_path(source: str) -> str:
    parts = urlsplit(source) if source.lower().startswith("file:") else None
    path = unquote(parts.path) if parts is not None else unquote(source)
    if (parts is not None and parts.netloc not in ("", "localhost")) or not os.path.isabs(path):
        raise ConfigurationError("key", "pin-source must be a file: URI or an absolute path to a file holding the PIN")
    return path


def parse_uri(uri: str) -> dict[str, Any]:
    """Return the :class:`Pkcs11Signer` keywords a ``pkcs11:`` URI names, plus ``type`` ("private" or "cert")."""
    if not isinstance(uri, str) or uri[:7].lower() != "pkcs11:":
        raise ConfigurationError("key", f"expected {_FORM}")
    path, _, query = uri[7:].partition("?")
    if "#" in uri:
        raise ConfigurationError("key", "a pkcs11: URI takes no fragment ('#')")
    options = _attributes(query, "&", _QUERY_ATTRIBUTES, "query")
    if "pin-value" in options:
        raise ConfigurationError(
            "key", "pin-value puts the PIN in the key URI, which is shown in process lists and messages; put the PIN "
            "in a file readable only by this service and use pin-source=file:<path>"
        )  # fmt: skip
    path_attributes = _attributes(path, ";", _PATH_ATTRIBUTES, "path")
    if "module-path" not in options:
        raise ConfigurationError("key", f"module-path (the vendor's PKCS#11 module) is missing; expected {_FORM}")
    keywords: dict[str, Any] = {"library_path": unquote(options["module-path"])}
    if "pin-source" in options:
        keywords["pin_file"] = _pin_path(options["pin-source"])
    if "token" in path_attributes:
        keywords["token_label"] = unquote(path_attributes["token"])
    if "slot-id" in path_attributes:
        if not path_attributes["slot-id"].isdigit():
            raise ConfigurationError("key", f"slot-id must be a decimal number, got {path_attributes['slot-id']!r}")
        keywords["slot"] = int(path_attributes["slot-id"])
    if "object" in path_attributes:
        keywords["key_label"] = unquote(path_attributes["object"])
    if "id" in path_attributes:
        keywords["key_id"] = unquote_to_bytes(path_attributes["id"])
    keywords["type"] = path_attributes.get("type", "private")
    if keywords["type"] not in _TYPES:
        raise ConfigurationError("key", f"type must be private or cert, got {keywords['type']!r}")
    return keywords


def signer_from_uri(
    uri: str,
    *,
    kid: str | None = None,
    algorithm: str = "RS256",
    certificate_chain: bytes | str | CertificateChain | None = None,
    pin: str | None = None,
    **options: Any,
) -> Pkcs11Signer:
    """Entry point for ``pkcs11:`` key URIs (RFC 7512); see this module's docstring for the attributes.

    With ``type=cert``, the certificate stored on the token with the key's id (or label) is read now and sent as
    ``x5c`` (:meth:`Pkcs11Signer.from_token_certificate`); otherwise the key is registered by ``kid``. ``pin``
    may be given here instead of ``pin-source``.
    """
    if options:
        raise ConfigurationError(next(iter(options)), "does not apply to pkcs11: keys")
    keywords = parse_uri(uri)
    if pin is not None:
        if "pin_file" in keywords:
            raise ConfigurationError("pin", "give the PIN either as pin or as pin-source in the URI, not both")
        keywords["pin"] = pin
    if keywords.pop("type") == "cert":
        if certificate_chain is not None:
            raise ConfigurationError("certificate_chain", "type=cert sends the token's own certificate as x5c")
        refuse_kid_with_certificate(kid, "the token's certificate (type=cert)")
        return Pkcs11Signer.from_token_certificate(algorithm=algorithm, **keywords)
    return Pkcs11Signer(**keywords, kid=kid, algorithm=algorithm, certificate_chain=certificate_chain)
