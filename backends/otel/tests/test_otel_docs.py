"""The code on docs/backends/otel.md runs as written and prints what the page says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from maskinporten_auth import MaskinportenAuth

from .conftest import SCOPE

PAGE = Path(__file__).resolve().parents[3] / "docs" / "backends" / "otel.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_the_try_it_snippet_exports_the_spans_and_metrics_the_page_shows():
    (snippet,) = [block for block in python_blocks() if "InMemorySpanExporter" in block]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, str(PAGE), "exec"), {})
    shown = [line[2:] for line in snippet.splitlines() if line.startswith("# ")]
    lines = printed.getvalue().splitlines()
    assert lines[:2] == [shown[0], shown[1] + " " + shown[2].strip()]  # the spans, the second wrapped on the page
    assert [line.split(" [")[0] for line in lines[2:]] == [line.split(" [")[0] for line in shown[3:]]


@pytest.fixture
def from_env(monkeypatch, tmp_path, maskinporten_emulator, otel_client, otel_key):
    """The MASKINPORTEN_* variables of ``otel_client`` on the emulator, as a deployment would set them."""
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        otel_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    for name, value in {
        "ENV": maskinporten_emulator.issuer,
        "CLIENT_ID": otel_client,
        "SCOPES": SCOPE,
        "KEY": pem.as_uri(),
        "KID": "k1",
    }.items():
        monkeypatch.setenv(f"MASKINPORTEN_{name}", value)


@pytest.mark.usefixtures("from_env")
def test_the_wiring_snippets_run_with_the_global_providers_and_a_callback_of_ones_own(maskinporten_emulator):
    wiring, own_callback = [block for block in python_blocks() if "from_env" in block]
    names: dict[str, object] = {}
    exec(compile(wiring, str(PAGE), "exec"), names)
    assert isinstance(names["auth"], MaskinportenAuth)
    assert names["auth"].get_token()
    exec(compile(own_callback, str(PAGE), "exec"), names)
    assert names["auth"].get_token()
    assert maskinporten_emulator.tokens_issued == 2
