"""Every Python block in README.md and docs/ runs as written, against the emulator.

A page's blocks run in order in one namespace, as a reader pastes them: a later block may use what an earlier one on
the same page made, so a page's first block stands on its own. A block is skipped only when a line
``<!-- fragment -->`` stands directly above its opening fence (a signature, or code that needs a cloud key service).
A block with ``if __name__ == "__main__":`` is a complete program and runs as a script of its own; a page whose
blocks define ``test_*`` functions runs as a pytest module.

The world they run in, offline (``tests/doc_snippets/sitecustomize.py`` sets it up in each subprocess):

- Maskinporten's ``"test"`` and ``"prod"`` and Altinn's ``"tt02"`` and ``"prod"`` are one emulator, which knows the
  docs' integration: client ``1ab20f23-…`` owned by Regnskap AS (313042995), key id ``6lBmeUGHQN``, the docs' scopes;
  its customers (310539759, 311654306, 313990265) delegated them and have system users, and the docs' consent exists.
- A request to any other host goes to a stand-in API, which answers 401 without a bearer token and 200 (201 to a POST)
  with one.
- The working directory holds the integration's key as ``key.pem`` and ``secrets/maskinporten.pem``, and the
  ``MASKINPORTEN_*`` variables configure the integration.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth.testing import MaskinportenEmulator

ROOT = Path(__file__).resolve().parents[1]
WORLD = Path(__file__).resolve().parent / "doc_snippets"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FRAGMENT = "<!-- fragment -->"

CLIENT_ID = "1ab20f23-c69c-44d3-b078-a0d92083ada5"
KID = "6lBmeUGHQN"
SUPPLIER = "313042995"
SCOPES = ("nav:oppfolgingsplan/lps.write", "nav:inntektsmelding/lps.write", "altinn:consentrequests.read")
CUSTOMERS = ("310539759", "311654306", "313990265")
#: The system users the docs name: (customer, externalRef).
SYSTEM_USERS = (("310539759", None), ("310539759", "avdeling-2"), ("313990265", None), ("313990265", "payroll-1"))
CONSENT = ("77ed8698-e619-4066-9eb4-5c1eb3f165a1", "25922947409")


@dataclass(frozen=True)
class Block:
    """A fenced Python block of a page: where it starts (the line after the fence), its code, and its marking."""

    page: str
    line: int
    code: str
    fragment: bool

    @property
    def is_program(self) -> bool:
        return re.search(r"^if __name__ == .__main__.:", self.code, flags=re.MULTILINE) is not None

    @property
    def defines_tests(self) -> bool:
        return re.search(r"^def test_\w+\(", self.code, flags=re.MULTILINE) is not None


def python_blocks(text: str, page: str) -> list[Block]:
    """The ```` ```python ```` blocks of a Markdown text, in order."""
    lines = text.splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            end = next(number for number in range(index + 1, len(lines)) if lines[number].strip().startswith("```"))
            fragment = index > 0 and lines[index - 1].strip() == FRAGMENT
            blocks.append(Block(page, index + 2, "\n".join(lines[index + 1 : end]) + "\n", fragment))
            index = end
        index += 1
    return blocks


def page_blocks(path: Path) -> list[Block]:
    return python_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


RUNNABLE = {str(path.relative_to(ROOT)): path for path in PAGES if any(not b.fragment for b in page_blocks(path))}


class _StandInApi(BaseHTTPRequestHandler):
    """Any path, any method: 401 without ``Authorization: Bearer``, else 200 (201 to a POST) with a JSON body."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        authorized = (self.headers.get("Authorization") or "").startswith("Bearer ")
        status = (201 if self.command == "POST" else 200) if authorized else 401
        body = json.dumps({"ok": authorized}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stand_in_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandInApi)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def docs_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def docs_emulator(docs_key: rsa.RSAPrivateKey) -> Iterator[MaskinportenEmulator]:
    """The emulator as the docs assume it: their integration, delegations, system users and consent."""
    with MaskinportenEmulator() as emulator:
        emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=SCOPES, keys={KID: docs_key.public_key()})
        for customer in CUSTOMERS:
            for scope in SCOPES:
                emulator.delegate(customer, SUPPLIER, scope)
        for customer, external_ref in SYSTEM_USERS:
            emulator.add_systemuser(customer, CLIENT_ID, system_id=f"{SUPPLIER}_lonn", external_ref=external_ref)
        consent_id, person = CONSENT
        emulator.add_consent(person, SUPPLIER, consent_id=consent_id)
        yield emulator


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    docs_key: rsa.RSAPrivateKey,
    docs_emulator: MaskinportenEmulator,
    stand_in_api: str,
) -> tuple[Path, dict[str, str]]:
    """The working directory and the environment of a snippet's process."""
    directory = tmp_path_factory.mktemp("docs-world")
    pem = docs_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for name in ("key.pem", "secrets/maskinporten.pem"):
        (directory / name).parent.mkdir(exist_ok=True)
        (directory / name).write_bytes(pem)
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MASKINPORTEN_")}
    environ |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(WORLD), os.environ.get("PYTHONPATH")])),
        "DOC_SNIPPETS_ISSUER": docs_emulator.issuer,
        "DOC_SNIPPETS_API": stand_in_api,
        "MASKINPORTEN_ENV": "test",
        "MASKINPORTEN_CLIENT_ID": CLIENT_ID,
        "MASKINPORTEN_SCOPES": SCOPES[0],
        "MASKINPORTEN_KEY": "key.pem",
        "MASKINPORTEN_KID": KID,
    }
    # A second integration, as the configuration guide's SKATT_MASKINPORTEN_ prefix names one.
    environ |= {f"SKATT_{name}": environ[name] for name in list(environ) if name.startswith("MASKINPORTEN_")}
    return directory, environ


def _run(command: list[str], world: tuple[Path, dict[str, str]]) -> None:
    directory, environ = world
    finished = subprocess.run(
        command, cwd=directory, env=environ, capture_output=True, text=True, timeout=180, check=False
    )
    if finished.returncode != 0:
        pytest.fail(f"{' '.join(command[1:])} failed:\n{finished.stdout}\n{finished.stderr}", pytrace=False)


@pytest.mark.parametrize("page", sorted(RUNNABLE))
def test_the_page_runs_as_written(page: str, world: tuple[Path, dict[str, str]]) -> None:
    blocks = [block for block in page_blocks(RUNNABLE[page]) if not block.fragment]
    directory, _ = world
    stem = re.sub(r"\W", "_", page.removesuffix(".md"))
    if any(block.defines_tests for block in blocks):
        module = directory / f"test_{stem}.py"
        module.write_text("".join(block.code for block in blocks), encoding="utf-8")
        _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)], world)
        return
    for number, program in enumerate(block for block in blocks if block.is_program):
        script = directory / f"{stem}_{number}.py"
        script.write_text(program.code, encoding="utf-8")
        _run([sys.executable, str(script)], world)
    pasted = directory / f"{stem}.json"
    pasted.write_text(json.dumps([[b.page, b.line, b.code] for b in blocks if not b.is_program]), encoding="utf-8")
    _run([sys.executable, str(WORLD / "run_page.py"), str(pasted)], world)


def test_a_block_marked_as_a_fragment_is_not_run() -> None:
    text = (
        "```python\nrun = 1\n```\n\n"
        "<!-- fragment -->\n```python\nnot run(\n```\n"
        "<!-- fragment -->\n\n```python\n2\n```\n"
    )
    blocks = python_blocks(text, "page.md")
    assert [(block.line, block.code, block.fragment) for block in blocks] == [
        (2, "run = 1\n", False),
        (7, "not run(\n", True),
        (12, "2\n", False),  # the marker must stand directly above the fence
    ]
