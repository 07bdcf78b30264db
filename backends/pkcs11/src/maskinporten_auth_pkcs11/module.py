"""One PKCS#11 module per process: loaded once, every call into it serialised, one logged-in session per token.

python-pkcs11 calls ``C_Initialize(NULL)``, which tells the module that the application will not call it from
several threads at once; SoftHSM2, for one, then switches its own locking off. Every call into a module therefore
runs under that module's lock, shared by all signers of the process. More sessions would buy no parallelism under
that lock, so each token has one session, opened and logged in on first use and shared by every signer of the
token: PKCS#11 login state belongs to the process and the token anyway, and closing one of several logged-in
sessions would log all of them out.

After ``os.fork()`` the child forgets the parent's sessions (without closing them: they are the parent's), and its
first use of the module finalises and initialises it again, then opens and logs in to sessions of its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

import pkcs11
from pkcs11 import exceptions as p11

from maskinporten_auth import forksafe
from maskinporten_auth.errors import SigningError

from .errors import BACKEND, STALE

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library

__all__ = ["Module", "Pin", "SessionLost", "TokenSelector", "module"]

_T = TypeVar("_T")

_PIN_REFUSED: Final = (p11.PinIncorrect, p11.PinLocked, p11.PinExpired, p11.PinInvalid, p11.PinLenRange)

logger = logging.getLogger(__name__)


class Pin:
    """A PIN that never shows itself: its repr and str are ``<hidden>``, and it is not picklable.

    ``refused`` keeps the token's answer when it refused the PIN, so that the PIN is never tried again: HSMs lock
    the user PIN after a few wrong attempts, and callers retry token fetches.
    """

    __slots__ = ("_value", "refused")

    def __init__(self, value: str) -> None:
        self._value = value
        self.refused: p11.PKCS11Error | None = None

    def reveal(self) -> str:
        """The PIN itself, for ``C_Login`` only."""
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a PIN cannot be pickled")


@dataclass(frozen=True)
class TokenSelector:
    """Which token: by label, or by slot id."""

    label: str | None = None
    slot: int | None = None

    def __str__(self) -> str:
        return f"token {self.label!r}" if self.label is not None else f"slot {self.slot}"

    def find(self, lib: Library) -> pkcs11.Token:
        """Return the token this selects; NoSuchToken or MultipleTokensReturned when there is not exactly one.

        A slot whose token cannot be read (SoftHSM2 answers CKR_GENERAL_ERROR for a token whose files are gone) is
        passed over rather than failing the search for the others, which python-pkcs11's ``get_token`` would do.
        """
        found = []
        for slot in lib.get_slots(token_present=True):
            if self.slot is not None and slot.slot_id != self.slot:
                continue
            try:
                token = slot.get_token()
            except p11.PKCS11Error:
                logger.debug("passing over slot %s: its token cannot be read", slot.slot_id, exc_info=True)
                continue
            if self.label is None or token.label == self.label:
                found.append(token)
        if not found:
            raise p11.NoSuchToken(f"no {self} is present")
        if len(found) > 1:
            raise p11.MultipleTokensReturned(f"{len(found)} tokens are labelled {self.label!r}")
        return found[0]


class Module:
    """A loaded PKCS#11 module: its lock, and one logged-in session per token (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._lib: Library | None = None
        self._reinitialise = False
        self._sessions: dict[TokenSelector, pkcs11.Session] = {}
        forksafe.register(self)

    def _after_fork(self) -> None:
        """In the child: a fresh lock, no sessions, and the module initialised again on first use."""
        self.lock = threading.RLock()
        self._sessions = {}
        self._reinitialise = self._lib is not None

    def _loaded(self) -> Library:
        if self._lib is None:
            try:
                self._lib = pkcs11.lib(self.path)
            except p11.PKCS11Error as exc:
                raise SigningError(
                    f"cannot load the PKCS#11 module {self.path}: {type(exc).__name__}: {exc}",
                    backend=BACKEND,
                    hint="library_path (module-path) must be the HSM vendor's PKCS#11 library for this machine, with "
                    "its client configuration in place (SOFTHSM2_CONF for SoftHSM2, Chrystoki.conf for Luna, ...)",
                ) from exc
            logger.debug("loaded PKCS#11 module %s (%s)", self.path, self._lib.manufacturer_id)
        elif self._reinitialise:
            self._reinitialise = False
            try:
                self._lib.finalize()  # the child's copy of the parent's state
            except p11.PKCS11Error:
                logger.debug("C_Finalize after fork failed; initialising anyway", exc_info=True)
            self._lib.initialize()
            logger.debug("initialised PKCS#11 module %s again after fork", self.path)
        return self._lib

    def call(self, token: TokenSelector, pin: Pin, operation: Callable[[pkcs11.Session], _T]) -> _T:
        """Run ``operation`` with the token's logged-in session, under the module's lock.

        When the session went stale (see :data:`~.errors.STALE`), it is dropped and ``operation`` runs once more
        in a new session; if that fails too, :class:`SessionLost` carries both failures.
        """
        with self.lock:
            try:
                return operation(self._session(token, pin))
            except STALE as first:
                self._discard(token)
                try:
                    return operation(self._session(token, pin))
                except p11.PKCS11Error as second:
                    raise SessionLost(first, second) from second

    def _session(self, token: TokenSelector, pin: Pin) -> pkcs11.Session:
        session = self._sessions.get(token)
        if session is None:
            if pin.refused is not None:
                raise pin.refused
            found = token.find(self._loaded())
            try:
                session = found.open(user_pin=pin.reveal())
            except _PIN_REFUSED as exc:
                pin.refused = exc
                raise
            except p11.UserAlreadyLoggedIn:
                # Another session of this process is logged in to the token; a new session shares that login. (The
                # session python-pkcs11 opened for the refused login stays open until the module is finalised.)
                session = found.open()
            self._sessions[token] = session
            logger.debug("opened a PKCS#11 session on %s of %s", token, self.path)
        return session

    def _discard(self, token: TokenSelector) -> None:
        session = self._sessions.pop(token, None)
        if session is not None:
            try:
                session.close()
            except p11.PKCS11Error:
                logger.debug("closing a stale PKCS#11 session failed", exc_info=True)


class SessionLost(Exception):
    """The token's session went stale and a new one failed as well (the token was removed, the HSM is gone)."""

    def __init__(self, first: p11.PKCS11Error, second: p11.PKCS11Error) -> None:
        self.first = first
        self.second = second
        super().__init__(f"{type(first).__name__}, then {type(second).__name__} in a new session")


class _Modules:
    """The process's modules by real path; its lock is replaced in a child forked while another thread held it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path: dict[str, Module] = {}
        forksafe.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def get(self, path: str) -> Module:
        key = os.path.realpath(path)
        with self._lock:
            found = self._by_path.get(key)
            if found is None:
                found = self._by_path[key] = Module(path)
            return found


_MODULES: Final = _Modules()


def module(path: str) -> Module:
    """Return this process's :class:`Module` for the library at ``path`` (one per real path)."""
    return _MODULES.get(path)
