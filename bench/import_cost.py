"""Import cost of ``maskinporten_auth`` against ``httpx``, and proof that it imports no cloud SDK.

Each import runs in a fresh interpreter; the runs alternate (bare interpreter, httpx, maskinporten_auth) so drift
hits all three alike. The import time is the run's wall time minus the bare interpreter's in the same round.
``-X importtime``'s own cumulative figure for the top-level module is reported beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import Results, Row, median, new_rsa_key

SECTION = "imports"
CHART = "Cold start and imports (ratio to the same run's baseline)"
CLOUD_SDKS = ("boto3", "botocore", "aiobotocore", "hvac", "azure")

_LOADED = """
import json, sys
{code}
roots = sorted({{name.split(".")[0] for name in sys.modules}})
print(json.dumps([name for name in roots if name in {sdks!r}]))
"""


def _run(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _importtime_table(module: str) -> dict[str, tuple[float, float]]:
    """``-X importtime`` for ``import module``: {module: (self seconds, cumulative seconds)}."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], check=True, capture_output=True, text=True
    )
    table: dict[str, tuple[float, float]] = {}
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[0].isdigit():
            table[parts[2]] = (int(parts[0]) / 1e6, int(parts[1]) / 1e6)
    return table


def _importtime(module: str) -> float:
    """The cumulative time ``-X importtime`` reports for ``module``, in seconds."""
    return _importtime_table(module)[module][1]


def _extra_packages(top: int = 5) -> str:
    """The packages ``import maskinporten_auth`` loads beyond ``import httpx``, by their own import time."""
    httpx_modules = set(_importtime_table("httpx"))
    by_package: dict[str, float] = {}
    for name, (own, _cumulative) in _importtime_table("maskinporten_auth").items():
        if name not in httpx_modules:
            package = name.split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + own
    ranked = sorted(by_package.items(), key=lambda item: item[1], reverse=True)[:top]
    return ", ".join(f"{package} {seconds * 1e3:.1f} ms" for package, seconds in ranked)


def _cloud_modules(code: str) -> list[str]:
    script = _LOADED.format(code=code, sdks=CLOUD_SDKS)
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def run(results: Results, *, quick: bool = False) -> None:
    rounds = 4 if quick else 12
    samples: dict[str, list[float]] = {"httpx": [], "maskinporten_auth": []}
    for _ in range(rounds):
        bare = _run("pass")
        for module in samples:
            samples[module].append(_run(f"import {module}") - bare)
    importtime = {module: median([_importtime(module) for _ in range(3)]) for module in samples}
    results.note(SECTION, f"{rounds} alternating rounds of fresh interpreters; interpreter start-up subtracted")
    httpx_ms = median(samples["httpx"]) * 1e3
    results.add(Row(SECTION, "import httpx", httpx_ms, "ms", note=f"-X importtime: {importtime['httpx'] * 1e3:.1f} ms"))
    ratio = median([ours / theirs for ours, theirs in zip(samples["maskinporten_auth"], samples["httpx"], strict=True)])
    results.add(
        Row(
            SECTION,
            "import maskinporten_auth (httpx included)",
            median(samples["maskinporten_auth"]) * 1e3,
            "ms",
            ratio,
            "import httpx",
            note=f"-X importtime: {importtime['maskinporten_auth'] * 1e3:.1f} ms",
        )
    )
    results.chart(CHART, "import vs httpx", "maskinporten_auth", ratio)
    results.note(SECTION, f"what maskinporten_auth loads beyond httpx, by own import time: {_extra_packages()}")

    with tempfile.TemporaryDirectory() as directory:
        key_file = Path(directory) / "key.pem"
        from cryptography.hazmat.primitives import serialization

        key_file.write_bytes(
            new_rsa_key().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        checks = {
            "import maskinporten_auth": "import maskinporten_auth",
            "signer_from_uri('file://…') and a MaskinportenAuth": (
                "from maskinporten_auth import MaskinportenAuth, signer_from_uri\n"
                f"signer = signer_from_uri({key_file.as_uri()!r}, kid='k')\n"
                "MaskinportenAuth(client_id='c', scopes='nav:x', signer=signer, environment='test')"
            ),
        }
        for what, code in checks.items():
            loaded = _cloud_modules(code)
            results.add(
                Row(
                    SECTION,
                    f"cloud SDK modules loaded by {what}",
                    len(loaded),
                    "modules",
                    target="0",
                    passed=not loaded,
                    note=", ".join(loaded) if loaded else f"none of {', '.join(CLOUD_SDKS)}",
                )
            )
