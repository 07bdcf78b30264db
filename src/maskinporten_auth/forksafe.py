"""Reset locks, in-flight refreshes and connections in a child process after ``os.fork()``.

A child forked while another thread held a lock or waited on a refresh would otherwise inherit that state
and wait forever; connections inherited from the parent must not be shared with it.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "register"]


class ForkAware(Protocol):
    """Something that resets its own state in the child after a fork."""

    def _after_fork(self) -> None: ...


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(item: ForkAware) -> None:
    """Have ``item._after_fork()`` called in every child forked from now on, as long as ``item`` lives."""
    _registered.add(item)


def _reset_in_child() -> None:
    for item in list(_registered):
        item._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
