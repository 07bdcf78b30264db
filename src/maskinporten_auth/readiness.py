"""Whether Maskinporten gives a token for a customer now: for onboarding screens and the ``check`` command."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .errors import TokenRequestError

__all__ = ["Readiness", "areadiness", "readiness"]


@dataclass(frozen=True)
class Readiness:
    """The outcome of :meth:`MaskinportenAuth.check`: truthy when a token was issued.

    Attributes:
        ready: whether Maskinporten issued a token.
        code: the MP code of the refusal (``"MP-251"``), or None.
        description: Maskinporten's own text, or None.
        hint: what to do about it, in plain words, or None.
        error: the refusal as the exception :meth:`~MaskinportenAuth.get_token` raises, or None.
    """

    ready: bool
    code: str | None = None
    description: str | None = None
    hint: str | None = None
    error: TokenRequestError | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.ready

    @classmethod
    def refused(cls, error: TokenRequestError) -> Readiness:
        """The readiness that Maskinporten's definite answer ``error`` gives."""
        return cls(False, error.code, error.description or str(error), error.hint, error)


_READY = Readiness(True)


def _is_answer(error: TokenRequestError) -> bool:
    """Whether the error is Maskinporten's answer about this request (not a failure to reach it)."""
    return not error.retryable


def readiness(get_token: Callable[[], str]) -> Readiness:
    """Run ``get_token`` and classify its outcome; errors that are not Maskinporten's answer propagate."""
    try:
        get_token()
    except TokenRequestError as exc:
        if not _is_answer(exc):
            raise
        return Readiness.refused(exc)
    return _READY


async def areadiness(get_token: Callable[[], Awaitable[str]]) -> Readiness:
    """:func:`readiness` for a coroutine function."""
    try:
        await get_token()
    except TokenRequestError as exc:
        if not _is_answer(exc):
            raise
        return Readiness.refused(exc)
    return _READY
