"""Coordination between the threads and event loops of one process: one fetch per key, a bound on fetches.

Private to the token provider. A flight wakes its waiters on whichever thread or event loop they wait; the worker
threads run the fetches of asyncio callers; the limiter bounds the fetches of both.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from .cache import CachedToken

if TYPE_CHECKING:
    import asyncio

__all__ = ["Flight", "Flights", "Limiter", "Workers"]

logger = logging.getLogger("maskinporten_auth")


class _Mailbox:
    """The waiters of one event loop: futures that other threads resolve, and the deadlines that end their waits.

    Waking a loop from another thread (``call_soon_threadsafe``) costs a system call and a contended hand-over of
    the GIL on both sides, more CPU in a burst of first tokens than the fetch's own HTTP exchange. So a worker wakes
    the loop only for the first future posted; while more callers on the loop still wait after that delivery, the
    loop collects what was posted every :data:`_POLL` seconds instead, and stops once a look finds nothing. A
    caller waiting alone is woken at once; in a burst each waits at most :data:`_POLL` longer.

    Deadlines are kept to the next :data:`_TICK`, with one loop timer per tick that has waiters rather than one per
    waiter: thousands of customers waiting at once cost a set entry each, not a timer in the loop's heap.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the mailboxes are the values of a WeakKeyDictionary keyed by the loop, and a value that held its
        # key would keep every event loop that ever waited for a token alive.
        self._loop = weakref.ref(loop)
        self._posted: list[asyncio.Future[None]] = []
        self._polling = False  # a look is scheduled on the loop: posting needs no wake-up
        self._lock = threading.Lock()
        self._due: dict[int, set[asyncio.Future[None]]] = {}
        self.waiting = 0  # futures of this loop being awaited now (changed on the loop only)

    def post(self, future: asyncio.Future[None]) -> bool:
        """Resolve ``future`` on its loop soon; False if the loop has closed."""
        with self._lock:
            self._posted.append(future)
            if len(self._posted) > 1 or self._polling:
                return True  # a delivery is already scheduled
        loop = self._loop()
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._deliver)
                return True
            except RuntimeError:  # the loop has closed
                pass
        with self._lock:  # nobody waits on a closed or collected loop any more
            self._posted.clear()
        return False

    def _deliver(self) -> None:
        with self._lock:
            posted, self._posted = self._posted, []
            self._polling = bool(posted) and self.waiting > len(posted)
        _resolve(posted)
        loop = self._loop()
        if self._polling and loop is not None:
            loop.call_later(_POLL, self._deliver)

    def expire_later(
        self, loop: asyncio.AbstractEventLoop, delay: float, future: asyncio.Future[None]
    ) -> set[asyncio.Future[None]]:
        """Resolve ``future`` in ``delay`` seconds (rounded up to a tick) unless it is resolved first.

        Called on ``loop``, this mailbox's. Returns the set ``future`` joined: discard it from there once it is
        resolved.
        """
        tick = math.ceil((time.monotonic() + delay) / _TICK)
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = set()
            loop.call_later(tick * _TICK - time.monotonic(), self._expire, tick)
        due.add(future)
        return due

    def _expire(self, tick: int) -> None:
        _resolve(self._due.pop(tick, ()))


def _resolve(futures: Iterable[asyncio.Future[None]]) -> None:
    """End the waits of ``futures`` (on their loop), leaving alone those a cancellation ended already."""
    for future in futures:
        if not future.done():
            future.set_result(None)


#: The resolution of an async waiter's deadline, in seconds.
_TICK = 0.25
#: Seconds between the looks for fetches that ended, while a loop has many waiters (see :class:`_Mailbox`).
_POLL = 0.002

_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()
_mailboxes_lock = threading.Lock()


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    """The mailbox of ``loop`` (the running event loop)."""
    mailbox = _mailboxes.get(loop)
    if mailbox is None:
        with _mailboxes_lock:
            mailbox = _mailboxes.get(loop)
            if mailbox is None:
                mailbox = _mailboxes[loop] = _Mailbox(loop)
    return mailbox


class Flight:
    """One token fetch. It waits for a free slot (queued), then runs (started), then ends.

    It ends with a token, an error, or neither (the fetching task was cancelled: a waiter then fetches itself).
    Waiters' patience counts from the start, so a fetch queued behind the in-flight limit does not time them out.
    """

    def __init__(self) -> None:
        self.token: CachedToken | None = None
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self._finished = False
        self._lock = threading.Lock()
        self._done: threading.Event | None = None  # made by the first waiting thread: most flights have none
        self._waiters: list[tuple[_Mailbox, asyncio.Future[None]]] = []

    def start(self) -> None:
        """Mark the fetch as running: from now on waiters' patience runs."""
        self.started_at = time.monotonic()

    def duration(self) -> float | None:
        """Seconds since the fetch started running, or None if it never did."""
        return None if self.started_at is None else time.monotonic() - self.started_at

    def finish(self, token: CachedToken | None = None, error: BaseException | None = None) -> None:
        """Record the outcome and wake every waiter."""
        with self._lock:
            self.token, self.error = token, error
            self._finished = True
            done, waiters, self._waiters = self._done, self._waiters, []
        if done is not None:
            done.set()
        for mailbox, future in waiters:
            mailbox.post(future)

    def _slice(self, patience: float) -> float | None:
        """Seconds to wait before looking again; None when patience has run out.

        A queued fetch may start any time: wait a whole ``patience`` and look again (one wake-up per waiter per
        ``patience``, however many wait). Once started, wait until ``patience`` from the start.
        """
        if self.started_at is None:
            return patience
        remaining = self.started_at + patience - time.monotonic()
        return remaining if remaining > 0 else None

    def wait(self, patience: float) -> bool:
        """Block until the fetch ends; False if it ran longer than ``patience`` seconds."""
        with self._lock:
            if self._finished:
                return True
            if self._done is None:
                self._done = threading.Event()
            done = self._done
        while not done.is_set():
            timeout = self._slice(patience)
            if timeout is None:
                return False
            done.wait(timeout)
        return True

    async def wait_async(self, patience: float) -> bool:
        """Wait in the running event loop until the fetch ends; False if it ran longer than ``patience``.

        One future per look: the fetch's end or the look's deadline resolves it, whichever comes first.
        """
        import asyncio

        loop = asyncio.get_running_loop()
        mailbox = _mailbox(loop)
        while True:
            timeout = self._slice(patience)
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                if self._finished:
                    return True
                if timeout is None:
                    return False
                self._waiters.append((mailbox, future))
            due = mailbox.expire_later(loop, timeout, future)
            mailbox.waiting += 1
            try:
                await future
            finally:
                mailbox.waiting -= 1
                due.discard(future)


class Flights:
    """The fetches in flight, at most one per cache key.

    Lock-free: ``dict.setdefault`` and ``dict.pop`` are atomic, and only a flight's leader retires it. An event
    loop starting thousands of fetches never waits for a lock that worker threads finishing fetches hold.
    """

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def begin(self, key: str, *, join: bool) -> tuple[Flight | None, bool]:
        """Start the fetch for ``key``, or find the one in flight.

        Returns ``(flight, True)`` when the caller must fetch, ``(flight, False)`` when it should wait for another
        caller's fetch, and ``(None, False)`` when a fetch is in flight and ``join`` is False.
        """
        flight = self._flights.get(key)
        if flight is None:
            candidate = Flight()
            flight = self._flights.setdefault(key, candidate)
            if flight is candidate:
                return flight, True
        return (flight if join else None), False

    def end(
        self, key: str, flight: Flight, token: CachedToken | None = None, error: BaseException | None = None
    ) -> None:
        """Retire ``flight`` (its leader calls this once) and wake its waiters with the outcome."""
        if self._flights.get(key) is flight:
            self._flights.pop(key, None)
        flight.finish(token, error)

    def reset(self) -> None:
        """Forget every flight: after a fork the parent's fetches never finish in the child."""
        self._flights = {}

    def __len__(self) -> int:
        return len(self._flights)


class Workers:
    """Daemon threads that run the fetches of asyncio callers: at most ``size``, started as work arrives.

    Lighter than a ``ThreadPoolExecutor`` (no future per job, no lock shared with the workers on submit), and
    daemon threads never hold up the interpreter's exit for a fetch nobody waits for any more.
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._started = 0
        self._lock = threading.Lock()

    @property
    def started(self) -> int:
        """How many workers run now."""
        return self._started

    def submit(self, job: Callable[[], object]) -> None:
        """Run ``job()`` in a worker thread; start one more while fewer than ``size`` run."""
        self._jobs.put(job)
        if self._started < self.size:
            with self._lock:
                if self._started < self.size:
                    self._started += 1
                    name = f"{self.name}-{self._started}"
                    threading.Thread(target=self._work, args=(self._jobs,), name=name, daemon=True).start()

    @staticmethod
    def _work(jobs: queue.SimpleQueue[Callable[[], object] | None]) -> None:
        while (job := jobs.get()) is not None:
            try:
                job()
            except BaseException:  # the job has ended its flight; keep the worker for the next one
                logger.exception("a token fetch failed in a worker thread")

    def close(self) -> None:
        """Let the workers finish their jobs and stop; a later :meth:`submit` starts new ones."""
        with self._lock:
            jobs, started = self._jobs, self._started
            self._jobs, self._started = queue.SimpleQueue(), 0
        for _ in range(started):
            jobs.put(None)

    def reset(self) -> None:
        """Forget the workers: after a fork they do not exist in the child."""
        self._jobs, self._started, self._lock = queue.SimpleQueue(), 0, threading.Lock()


class Limiter:
    """At most ``limit`` fetches at once.

    Every fetch runs in a thread (its caller's or a worker), so a semaphore serves sync and asyncio callers alike.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.peak = 0
        self._in_use = 0
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot while the block runs, waiting for one first if all are taken."""
        self._slots.acquire()
        with self._lock:
            self._in_use += 1
            self.peak = max(self.peak, self._in_use)
        try:
            yield
        finally:
            with self._lock:
                self._in_use -= 1
            self._slots.release()

    def reset(self) -> None:
        """Free every slot: after a fork the parent's holders never release them in the child."""
        self._slots = threading.BoundedSemaphore(self.limit)
        self._lock = threading.Lock()
        self._in_use = 0
