"""The observability guide's code does what the guide says it does, against the emulator.

That every block of the docs runs at all is ``test_doc_snippets``; this checks what these blocks print and log. They
assume what a reader has: ``MaskinportenAuth`` and the ``MASKINPORTEN_*`` variables.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from maskinporten_auth import MaskinportenAuth
from maskinporten_auth.testing import MaskinportenEmulator

from .conftest import SCOPE
from .test_doc_snippets import page_blocks

GUIDES = Path(__file__).resolve().parents[1] / "docs" / "guides"


def python_blocks(page: str) -> list[str]:
    return [block.code for block in page_blocks(GUIDES / page)]


def run(snippet: str, names: dict[str, Any]) -> str:
    """Run ``snippet`` in ``names``; return what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "<guide>", "exec"), names)
    return printed.getvalue()


@pytest.fixture
def deployment(monkeypatch, maskinporten_emulator: MaskinportenEmulator, registered_client, pem_file) -> dict[str, str]:
    """``registered_client`` as a deployment configures it."""
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
