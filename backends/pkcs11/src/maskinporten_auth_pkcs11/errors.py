"""Turn python-pkcs11's exceptions into :class:`~maskinporten_auth.errors.SigningError` with a hint on what to do.

Messages name the module, the token and the key as configured, and the PKCS#11 return code; never the PIN.
"""

from __future__ import annotations

from typing import Final

from pkcs11 import exceptions as p11

from maskinporten_auth.errors import SigningError

__all__ = ["BACKEND", "STALE", "signing_error"]

BACKEND: Final = "pkcs11"

#: Failures after which a new session (and a new key handle) may succeed: the session or handle went stale,
#: the token was logged out by someone else, or the token was removed and may be back.
STALE: Final = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
    p11.UserNotLoggedIn,
    p11.DeviceRemoved,
    p11.TokenNotPresent,
)

REMOVED_HINT: Final = (
    "the token was removed or the HSM became unreachable: reinsert the token or restore the connection to the HSM "
    "(check its client configuration and network); the next signature opens a new session"
)

_HINTS: Final[dict[type[p11.PKCS11Error], str]] = {
    p11.PinIncorrect: "the PIN is wrong: fix the pin or pin_file (pin-source) and build a new signer (restart); this "
    "signer never tries a refused PIN again, since repeated wrong PINs lock the user PIN on most HSMs",
    p11.PinLocked: "the user PIN is locked after too many wrong PINs: the token's security officer must unlock or "
    "reset it (e.g. pkcs11-tool --init-pin --login --login-type so, or the vendor's tool)",
    p11.PinExpired: "the user PIN has expired: set a new one with the vendor's tool (pkcs11-tool --change-pin)",
    p11.PinInvalid: "the PIN has characters the token does not accept: check the pin or pin_file",
    p11.PinLenRange: "the PIN is too long or too short for this token: check the pin or pin_file",
    p11.UserPinNotInitialized: "the token's user PIN is not set: initialise it (pkcs11-tool --init-pin, or "
    "softhsm2-util --init-token)",
    p11.NoSuchToken: "no token matches: list the tokens with `pkcs11-tool --module <module> --list-token-slots` and "
    "check token_label or slot",
    p11.MultipleTokensReturned: "several tokens have this label: select one by slot (slot-id=) instead",
    p11.NoSuchKey: "no private key matches: list the token's objects with `pkcs11-tool --module <module> "
    "--list-objects --login` and check key_label (object=) and key_id (id=)",
    p11.MultipleObjectsReturned: "several private keys match: give both key_label and key_id, or make them unique",
    p11.MechanismInvalid: "the token cannot sign with RSASSA-PKCS1-v1_5 and this hash; choose another algorithm",
    p11.DeviceMemory: "the HSM is out of memory or sessions: close other applications' sessions, or restart it",
    p11.SessionCount: "the token has no session left: close other applications' sessions",
    p11.DeviceError: REMOVED_HINT,
    p11.DeviceRemoved: REMOVED_HINT,
    p11.TokenNotPresent: REMOVED_HINT,
    p11.TokenNotRecognised: REMOVED_HINT,
}


def _hint(error: BaseException) -> str | None:
    for kind, hint in _HINTS.items():
        if isinstance(error, kind):
            return hint
    return None


def signing_error(error: BaseException, *, action: str, key: str, hint: str | None = None) -> SigningError:
    """Return the SigningError for ``error``, raised by the module while ``action`` (e.g. "signing")."""
    detail = type(error).__name__
    # python-pkcs11's messages repeat search templates and labels, never a PIN; its PIN errors carry no text.
    text = str(error).strip()
    if text and text != detail:
        detail = f"{detail}: {text}"
    return SigningError(f"{action} failed: {detail}", backend=BACKEND, key=key, hint=hint or _hint(error))
