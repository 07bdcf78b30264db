"""Threads, asyncio tasks and fork: calls into the module are serialised, and a forked child has its own session."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from maskinporten_auth_pkcs11.module import Module

THREADS = 16
DELAY = 1.0


def test_sixteen_threads_sign_at_once(softhsm_key, softhsm_new_key, softhsm_signer, softhsm_verify):
    other = softhsm_new_key()
    signers = [softhsm_signer(softhsm_key), softhsm_signer(other, algorithm="RS512")]  # one token, one session
    keys = [softhsm_key.public_key, other.public_key]
    start = threading.Barrier(THREADS)

    def work(index: int) -> list[tuple[int, bytes, bytes]]:
        start.wait()  # every thread reaches first use together: the key check races too
        results = []
        for round_ in range(25):
            which = (index + round_) % 2
            data = f"{index}.{round_}".encode()
            results.append((which, data, signers[which].sign(data)))
        return results

    with ThreadPoolExecutor(THREADS) as pool:
        results = [item for batch in pool.map(work, range(THREADS)) for item in batch]

    assert len(results) == THREADS * 25
    for which, data, signature in results:
        softhsm_verify(keys[which], signers[which].algorithm, data, signature)


@pytest.mark.asyncio
async def test_many_asyncio_tasks_sign_at_once(softhsm_key, softhsm_signer, softhsm_verify):
    signer = softhsm_signer(softhsm_key, algorithm="RS384")
    inputs = [f"task-{n}".encode() for n in range(200)]

    signatures = await asyncio.gather(*(signer.asign(data) for data in inputs))

    for data, signature in zip(inputs, signatures, strict=True):
        softhsm_verify(softhsm_key.public_key, "RS384", data, signature)


@pytest.fixture
def slow_module(monkeypatch):
    """Every call into a PKCS#11 module takes a second longer (SoftHSM2 signs in about 1 ms, hiding a blocked loop)."""
    original = Module.call

    def slow_call(self, *args, **kwargs):
        time.sleep(DELAY)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Module, "call", slow_call)


async def longest_stall_during(awaitable) -> tuple[object, float]:
    """Run ``awaitable`` beside a task ticking every 10 ms; return its result and the longest gap between ticks."""
    ticks = [time.monotonic()]
    done = False

    async def ticker() -> None:
        while not done:
            await asyncio.sleep(0.01)
            ticks.append(time.monotonic())

    task = asyncio.create_task(ticker())
    try:
        result = await awaitable
    finally:
        done = True
        await task
    assert len(ticks) > 10
    return result, max(later - earlier for earlier, later in itertools.pairwise(ticks))


@pytest.mark.asyncio
async def test_asign_does_not_block_the_event_loop(softhsm_key, softhsm_signer, softhsm_verify, slow_module):
    signer = softhsm_signer(softhsm_key)

    signature, stall = await longest_stall_during(signer.asign(b"x"))  # key check and signature: 2 s on the device

    softhsm_verify(softhsm_key.public_key, "RS256", b"x", signature)
    assert stall < DELAY / 2  # a blocked loop would stall for the whole second of each device call


@pytest.mark.asyncio
async def test_averify_key_does_not_block_the_event_loop(softhsm_key, softhsm_signer, slow_module):
    signer = softhsm_signer(softhsm_key)

    _, stall = await longest_stall_during(signer.averify_key())

    assert stall < DELAY / 2
    assert signer.public_key().public_numbers() == softhsm_key.public_key.public_numbers()


def run_in_child(body) -> int:
    """Fork; run ``body()`` in the child (killed after 20 s) and return the child's exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            signal.alarm(20)
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_opens_its_own_session(softhsm_key, softhsm_signer, softhsm_verify):
    signer = softhsm_signer(softhsm_key)
    signer.sign(b"parent")
    parents_session = signer._module._sessions[signer.token]

    def child() -> int:
        signature = signer.sign(b"child")
        softhsm_verify(softhsm_key.public_key, "RS256", b"child", signature)
        return 0 if signer._module._sessions[signer.token] is not parents_session else 2

    assert run_in_child(child) == 0
    softhsm_verify(softhsm_key.public_key, "RS256", b"parent again", signer.sign(b"parent again"))
    assert signer._module._sessions[signer.token] is parents_session


def test_a_fork_while_another_thread_holds_the_module_lock(softhsm_key, softhsm_signer, softhsm_verify):
    signer = softhsm_signer(softhsm_key)
    signer.sign(b"warm")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with signer._module.lock:
            holding.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait()
    try:

        def child() -> int:
            softhsm_verify(softhsm_key.public_key, "RS256", b"child", signer.sign(b"child"))
            return 0

        assert run_in_child(child) == 0  # the child would wait forever on the parent's held lock
    finally:
        release.set()
        thread.join()
