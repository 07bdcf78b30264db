"""The code in the observability and the concurrency guides runs as written, against the emulator.

The guides' snippets assume what a reader has: ``auth`` and ``MaskinportenAuth``, the ``MASKINPORTEN_*`` variables
and, for the calls to an API, its base URL ``api``. Complete programs (the multiprocessing one) run as scripts.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maskinporten_auth import MaskinportenAuth
from maskinporten_auth.testing import MaskinportenEmulator
from maskinporten_auth.testing.protected_api import ProtectedApi

from .conftest import SCOPE, SUPPLIER

GUIDES = Path(__file__).resolve().parents[1] / "docs" / "guides"
CUSTOMERS = ("310539759", "311654306")


def python_blocks(page: str) -> list[str]:
    text = (GUIDES / page).read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def run(snippet: str, names: dict[str, Any]) -> str:
    """Run ``snippet`` in ``names``; return what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "<guide>", "exec"), names)
    return printed.getvalue()


@pytest.fixture
def deployment(monkeypatch, maskinporten_emulator: MaskinportenEmulator, registered_client, pem_file) -> dict[str, str]:
    """``registered_client`` as a deployment configures it, with CUSTOMERS' delegations."""
    for customer in CUSTOMERS:
        maskinporten_emulator.delegate(customer, SUPPLIER, SCOPE)
    variables = {
        "MASKINPORTEN_ENV": maskinporten_emulator.issuer,
        "MASKINPORTEN_CLIENT_ID": registered_client,
        "MASKINPORTEN_SCOPES": SCOPE,
        "MASKINPORTEN_KEY": pem_file.as_uri(),
        "MASKINPORTEN_KID": "test-key-1",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


@pytest.fixture
def api(maskinporten_emulator: MaskinportenEmulator) -> Iterator[ProtectedApi]:
    with ProtectedApi(lambda: maskinporten_emulator.jwks, issuer=maskinporten_emulator.issuer, scope=SCOPE) as server:
        yield server


@pytest.mark.usefixtures("deployment")
def test_the_on_event_example_counts_what_it_says(maskinporten_emulator):
    on_event, _, _ = python_blocks("observability.md")
    printed = run(on_event, {"MaskinportenAuth": MaskinportenAuth})
    (shown,) = re.findall(r"print\(counts\)  # (.*)", on_event)
    assert printed.strip() == shown
    assert maskinporten_emulator.tokens_issued == 1


@pytest.mark.usefixtures("deployment")
def test_the_opentelemetry_wiring_in_the_observability_guide_runs():
    pytest.importorskip("maskinporten_auth_otel")
    _, wiring, _ = python_blocks("observability.md")
    names: dict[str, Any] = {"MaskinportenAuth": MaskinportenAuth}
    run(wiring, names)
    assert names["auth"].get_token()


@pytest.mark.usefixtures("deployment")
def test_the_logging_example_logs_a_line_per_token_obtained(caplog):
    *_, configuration = python_blocks("observability.md")
    logger = logging.getLogger("maskinporten_auth")
    level = logger.level
    try:
        run(configuration, {})
        assert logger.level == logging.INFO
        MaskinportenAuth.from_env().get_token()
    finally:
        logger.setLevel(level)
    (record,) = [record for record in caplog.records if record.name == "maskinporten_auth"]
    assert record.levelno == logging.INFO and record.getMessage().startswith("Maskinporten token obtained")


@pytest.mark.usefixtures("deployment")
def test_the_thread_asyncio_gunicorn_and_serverless_examples_share_one_token(maskinporten_emulator, api):
    threads, loops, gunicorn, _, serverless = python_blocks("concurrency.md")
    names: dict[str, Any] = {"MaskinportenAuth": MaskinportenAuth, "api": api.url}
    run(gunicorn, names)  # makes auth and http
    run(threads, names)
    assert names["statuses"] == [200] * 100
    run(loops, names)
    assert maskinporten_emulator.tokens_issued == 1
    names["http"].close()
    run(serverless, names)
    assert names["handler"]({}, None) == 200
    assert maskinporten_emulator.tokens_issued == 2  # the serverless module's own auth


def test_the_multiprocessing_example_runs_with_spawned_processes(deployment, maskinporten_emulator, tmp_path):
    _, _, _, program, _ = python_blocks("concurrency.md")
    script = tmp_path / "pool.py"
    script.write_text(program)
    finished = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, **deployment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    lengths = ast.literal_eval(finished.stdout)  # the token lengths the program printed
    assert len(lengths) == len(CUSTOMERS) and all(length > 100 for length in lengths)
    assert maskinporten_emulator.tokens_issued == len(CUSTOMERS)
