"""The grant's clock: the local wall clock, corrected by the offset Maskinporten's ``Date`` header shows."""

from __future__ import annotations

import email.utils
import logging
import time

__all__ = ["GrantClock"]

logger = logging.getLogger("maskinporten_auth")

#: Below this, an estimate from a one-second-resolution Date header is noise.
_SIGNIFICANT_SKEW = 2.0


class GrantClock:
    """Tells the time to put in ``iat``.

    Every response from the token endpoint updates :attr:`estimated_offset` (server time minus local time, from its
    ``Date`` header). The estimate is applied (:attr:`offset`) only once Maskinporten has rejected a grant for its
    timing, so a wrong ``Date`` from some proxy cannot break a working clock.
    """

    def __init__(self) -> None:
        self.estimated_offset: float | None = None
        self.offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch, as Maskinporten's clock would say."""
        return time.time() + self.offset

    def observe(self, date_header: str | None, sent_at: float, received_at: float) -> None:
        """Update the estimate from a response's ``Date`` header (wall times of sending and receiving)."""
        if not date_header:
            return
        try:
            server = email.utils.parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        # Date is truncated to the second: its true value lies in [server, server + 1).
        self.estimated_offset = server + 0.5 - (sent_at + received_at) / 2

    def correct(self) -> bool:
        """Apply the estimated offset; return whether that changes the clock significantly."""
        if self.estimated_offset is None or abs(self.estimated_offset - self.offset) < _SIGNIFICANT_SKEW:
            return False
        logger.warning(
            "the local clock is %.1f s off Maskinporten's; correcting the grant's iat/exp (synchronise with NTP)",
            -self.estimated_offset,
        )
        self.offset = self.estimated_offset
        return True
