"""When to try the token endpoint again: exponential backoff with full jitter, ``Retry-After``, and a deadline."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from .checks import is_finite_number, validate_count
from .errors import ConfigurationError, RateLimitedError, TokenRequestError

__all__ = ["MIN_ATTEMPT_TIME", "RetryPolicy", "RetrySchedule"]

#: The least time, in seconds, a retry must have before the deadline (each attempt is cut off at the deadline).
MIN_ATTEMPT_TIME = 0.25


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a token request fails.

    Only network errors, timeouts, 5xx, 429 and garbled answers are retried; other 4xx answers are final. Each
    attempt signs a new grant.

    Attributes:
        attempts: the most attempts in all (1 = never retry).
        deadline: seconds from the first attempt after which no new attempt starts and waits are cut short. A
            retry that would start less than :data:`MIN_ATTEMPT_TIME` (or ``timeout``, if shorter) before it is not
            made: it could not finish, and its timeout would hide the answer that the last attempt did get.
        backoff: the first backoff cap in seconds; it doubles with each retry (full jitter: a random wait up to
            the cap).
        max_backoff: the largest backoff cap.
        timeout: seconds for one HTTP attempt as a whole (connection, request, response headers and body: a
            server that drips its answer is cut off too), never beyond the deadline.
    """

    attempts: int = 4
    deadline: float = 30.0
    backoff: float = 0.25
    max_backoff: float = 5.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        validate_count(self.attempts, "retry.attempts")
        for name in ("deadline", "backoff", "max_backoff", "timeout"):
            value = getattr(self, name)
            if not is_finite_number(value) or not value > 0:
                raise ConfigurationError(
                    f"retry.{name}", f"must be a positive, finite number of seconds, got {value!r}"
                )

    def start(self) -> RetrySchedule:
        """Begin the schedule of one token fetch."""
        return RetrySchedule(self)


class RetrySchedule:
    """The attempts of one token fetch: how long each may take and how long to wait after each failure."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.attempt = 0
        self._deadline = time.monotonic() + policy.deadline

    def remaining(self) -> float:
        """Seconds left before the deadline."""
        return self._deadline - time.monotonic()

    def attempt_timeout(self) -> float:
        """The timeout for the next attempt: the policy's, cut to the time left."""
        return max(0.001, min(self.policy.timeout, self.remaining()))

    def delay_after(self, error: TokenRequestError) -> float:
        """Return how long to wait before the next attempt, or re-raise ``error`` when there is none."""
        self.attempt += 1
        if not error.retryable or self.attempt >= self.policy.attempts:
            raise error
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            delay = error.retry_after
        else:
            # The exponent stops growing long before 2**n overflows a float (after about 1000 retries).
            cap = min(self.policy.max_backoff, self.policy.backoff * 2.0 ** min(self.attempt - 1, 64))
            delay = random.uniform(0, cap)  # noqa: S311 - jitter, not cryptography
        if delay + min(MIN_ATTEMPT_TIME, self.policy.timeout) >= self.remaining():
            raise error
        return delay
