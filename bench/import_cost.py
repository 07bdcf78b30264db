"""Import cost of ``maskinporten_auth`` against ``httpx``, the command line's start-up, and no cloud SDK loaded.

Each import and command runs in a fresh interpreter; the runs alternate (bare interpreter, httpx, the package's
imports, ``maskinporten --help`` and ``--version``) so drift hits all alike. An import's time is the run's wall time
minus the bare interpreter's in the same round; the target is ``import maskinporten_auth`` and
``from maskinporten_auth import MaskinportenAuth`` (what a program really writes) each within 1.3x ``import httpx``.
``-X importtime``'s own cumulative figure for the top-level module is reported beside it.

The package is byte-compiled first, as ``pip install`` does: httpx, installed from a wheel, is read from its
``.pyc`` files, and a checkout run with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module of ours
from source in every run and measure the compiler.
"""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import TIMES, Results, Row, median, new_rsa_key

SECTION = "imports"
CHART = "Cold start and imports (ratio to the same run's baseline)"
CLOUD_SDKS = ("boto3", "botocore", "aiobotocore", "hvac", "azure")
MASKINPORTEN = Path(sys.executable).with_name("maskinporten")
#: What a program's first line costs, each as a ratio to ``import httpx`` with the same target.
IMPORTS = {
    "import maskinporten_auth": "import maskinporten_auth",
    "from maskinporten_auth import MaskinportenAuth": "from maskinporten_auth import MaskinportenAuth",
}
TARGET_RATIO = 1.3

_LOADED = """
import json, sys
{code}
roots = sorted({{name.split(".")[0] for name in sys.modules}})
print(json.dumps([name for name in roots if name in {sdks!r}]))
"""


def _wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _importtime_table(code: str) -> dict[str, tuple[float, float]]:
    """``-X importtime`` for ``code``: {module: (self seconds, cumulative seconds)}."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True, capture_output=True, text=True)
    table: dict[str, tuple[float, float]] = {}
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[0].isdigit():
            table[parts[2]] = (int(parts[0]) / 1e6, int(parts[1]) / 1e6)
    return table


def _importtime(module: str) -> float:
    """The cumulative time ``-X importtime`` reports for ``module``, in seconds."""
    return _importtime_table(f"import {module}")[module][1]


def _extra_packages(code: str, top: int = 5) -> str:
    """The packages ``code`` loads beyond ``import httpx``, by their own import time."""
    httpx_modules = set(_importtime_table("import httpx"))
    by_package: dict[str, float] = {}
    for name, (own, _cumulative) in _importtime_table(code).items():
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
    import maskinporten_auth

    compileall.compile_dir(Path(maskinporten_auth.__file__).parent, quiet=1)
    rounds = 4 if quick else 12
    imports = {"httpx": "import httpx", **IMPORTS}
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        **{name: [sys.executable, "-c", code] for name, code in imports.items()},
        **{f"maskinporten {option}": [str(MASKINPORTEN), option] for option in ("--help", "--version")},
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            samples[name].append(_wall_time(command))
    bare = samples["python -c pass"]
    added = {name: [wall - start for wall, start in zip(times, bare, strict=True)] for name, times in samples.items()}
    results.note(
        SECTION,
        f"{rounds} alternating rounds of fresh interpreters; an import's time is the run's wall time minus that "
        "of `python -c pass` in the same round",
    )
    importtime = {module: median([_importtime(module) for _ in range(3)]) for module in ("httpx", "maskinporten_auth")}
    results.add(
        Row(
            SECTION,
            "import httpx",
            median(added["httpx"]) * 1e3,
            "ms",
            note=f"-X importtime: {importtime['httpx'] * 1e3:.1f} ms",
        )
    )
    for name in IMPORTS:
        ratio = median([ours / theirs for ours, theirs in zip(added[name], added["httpx"], strict=True)])
        note = (
            f"-X importtime: {importtime['maskinporten_auth'] * 1e3:.1f} ms"
            if name == "import maskinporten_auth"
            else ""
        )
        results.add(
            Row(
                SECTION,
                name,
                median(added[name]) * 1e3,
                "ms",
                ratio,
                "import httpx",
                target=f"≤ {TARGET_RATIO}{TIMES}",
                passed=ratio <= TARGET_RATIO,
                note=note,
            )
        )
        results.chart(CHART, "import vs httpx", name, ratio)
    for name in commands:
        if not name.startswith("maskinporten "):
            continue
        ratio = median([wall / start for wall, start in zip(samples[name], bare, strict=True)])
        beyond = median(added[name])
        results.add(
            Row(
                SECTION,
                f"{name} (wall time)",
                median(samples[name]) * 1e3,
                "ms",
                ratio,
                "python -c pass",
                target="start-up adds ≤ import httpx",
                passed=beyond <= median(added["httpx"]),
                note=f"+{beyond * 1e3:.1f} ms beyond the interpreter's start-up",
            )
        )
        results.chart(CHART, "command line vs python -c pass", name, ratio)
    for name, code in IMPORTS.items():
        results.note(SECTION, f"what `{name}` loads beyond httpx, by own import time: {_extra_packages(code)}")

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
