"""``nox -s bench``: every benchmark in one run, as ratios to baselines of the same run; writes the docs page.

Usage: ``python bench/run.py [--quick] [--only SECTION ...] [--no-docs]``. A full run writes docs/benchmarks.md,
docs/benchmarks.png and bench/results.json; ``--quick`` and ``--only`` check the harness and write nothing unless
``--docs`` is given.
Exits 1 when a target is missed or a benchmark fails.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchkit import TIMES, Results, Row, Setup, emulator_setup, new_rsa_key

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("imports", "overhead", "herd", "rollover", "signers", "fleet", "customers", "otel")
PACKAGES = ("maskinporten-auth", "httpx", "requests", "authlib", "httpx-auth", "cryptography", "redis")


def _commit() -> str:
    """The commit measured, with ``-dirty`` when the work tree differs from it (read before the page is written)."""
    described = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return described.stdout.strip() or "unknown"


def _environment(commit: str, load_before: tuple[float, float, float]) -> list[str]:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    load_after = os.getloadavg()
    return [
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit {commit}",
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        f"load average (1 min) at start {load_before[0]:.1f}, at end {load_after[0]:.1f}",
        "; ".join(versions),
    ]


def _section(results: Results, name: str, body: Callable[[], None]) -> None:
    print(f"\n== {name}", flush=True)
    started = time.perf_counter()
    try:
        body()
    except Exception as exc:  # one broken benchmark must not hide the others' numbers
        traceback.print_exc()
        results.add(Row(name, f"{name} benchmark failed", None, "", target="runs", passed=False, note=repr(exc)))
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: check the harness, not the numbers")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run these sections")
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--docs", action="store_true", help="write the docs page even for a partial run")
    docs.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import customers
    import fleet
    import herd
    import import_cost
    import otel_cost
    import overhead
    import report
    import rollover
    import signer_cost

    commit = _commit()
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = Results()
    key = new_rsa_key()
    setup: Setup
    with emulator_setup(key) as setup:
        runners: dict[str, Callable[[], None]] = {
            "imports": lambda: import_cost.run(results, quick=args.quick),
            "overhead": lambda: overhead.run(setup, results, quick=args.quick),
            "herd": lambda: herd.run(setup, results, quick=args.quick),
            "rollover": lambda: rollover.run(setup, results, quick=args.quick),
            "signers": lambda: signer_cost.run(setup, results, quick=args.quick),
            "fleet": lambda: fleet.run(results, key, quick=args.quick),
            "customers": lambda: customers.run(setup, results, quick=args.quick),
            "otel": lambda: otel_cost.run(setup, results, quick=args.quick),
        }
        for name in SECTIONS:
            if name in args.only:
                _section(results, name, runners[name])
    seconds = time.perf_counter() - started

    full = set(args.only) == set(SECTIONS) and not args.quick
    if (full or args.docs) and not args.no_docs:
        report.write_docs(results, environment=_environment(commit, load_before), seconds=seconds)
        print(f"\nwrote {report.PAGE}, {report.PLOT} and {report.RESULTS}")

    print(f"\nwhole run: {seconds:.0f} s")
    if results.missed:
        print("\nTARGETS MISSED:")
        for row in results.missed:
            measured = f"{row.ratio:.3f}{TIMES}" if row.ratio is not None else f"{row.value} {row.unit}"
            print(f"  {row.section}: {row.name}: {measured}, target {row.target} {row.note}")
        return 1
    print("\nevery target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
