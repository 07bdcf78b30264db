"""The soak run of ``nox -s soak`` (bench/soak.py), for ten seconds, so that it runs with the suite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    """bench/soak.py, a script and not a module of the package, loaded from its file."""
    spec = importlib.util.spec_from_file_location("bench_soak", BENCH_SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_ten_second_soak_with_many_faults_passes(soak):
    # A higher fault rate than the real soak's 5 %, so that ten seconds of 3-second tokens meet several faults.
    report = soak.run_soak(soak.SoakConfig(seconds=10, threads=2, tasks=4, fault_rate=0.4, seed=7))
    print(report.summary())
    assert report.problems == []
    assert report.faults_injected >= 1
    assert report.requests > 100 and report.ok > 0
    assert report.auth_failures_with_valid_token == 0
    assert report.reused_jtis == []
    assert report.tokens_issued >= report.seconds / 3  # refreshed across several rollovers
    assert report.grants <= report.storm_limit


def test_the_report_fails_on_each_problem(soak):
    passing = soak.SoakReport(
        seconds=10,
        requests=100,
        ok=100,
        auth_failures=0,
        auth_failures_with_valid_token=0,
        other_failures=0,
        grants=6,
        tokens_issued=6,
        faults_injected=1,
        api_rejections=0,
        reused_jtis=[],
        ideal_grants=5.6,
    )
    assert passing.problems == []
    assert "PASSED" in passing.summary()
    failing = [
        {"auth_failures": 1, "auth_failures_with_valid_token": 1},
        {"reused_jtis": ["a-jti"]},
        {"grants": 100},
        {"requests": 0, "ok": 0},
    ]
    for change in failing:
        report = soak.SoakReport(**{**passing.__dict__, **change})
        assert len(report.problems) == 1, change
        assert "FAILED" in report.summary()


def test_the_command_line_exits_non_zero_on_failure(soak, monkeypatch):
    failed = soak.SoakReport(10, 0, 0, 0, 0, 0, 0, 0, 0, 0, [], 5.6)
    monkeypatch.setattr(soak, "run_soak", lambda config: failed)
    assert soak.main(["--seconds", "1"]) == 1
