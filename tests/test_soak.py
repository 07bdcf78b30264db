"""The soak run of ``nox -s soak`` (bench/soak.py), for twelve seconds, so that it runs with the suite."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from maskinporten_auth.cache import RefreshPolicy
from maskinporten_auth.errors import NetworkError

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


def test_a_twelve_second_soak_with_many_faults_passes(soak):
    # A higher fault rate than the real soak's 5 %, so that a short run meets several faults; 6-second tokens, so
    # that an early refresh starts while the token may still be sent and a failed one must fall back to it.
    config = soak.SoakConfig(seconds=12, token_lifetime=6, threads=2, tasks=4, fault_rate=0.4, seed=7)
    report = soak.run_soak(config)
    print(report.summary())
    assert report.problems == []
    assert report.faults_injected >= 1
    assert report.requests > 100 and report.ok > 0
    assert report.auth_failures_with_valid_token == 0
    assert report.reused_jtis == []
    assert report.tokens_issued >= report.seconds / config.token_lifetime  # refreshed across rollovers
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


def test_a_failure_counts_against_the_library_only_while_the_held_token_may_be_sent(soak):
    refresh = RefreshPolicy()
    outcomes = soak.Outcomes(auth=None, refresh=refresh)  # judging needs only the policy
    now = time.monotonic()
    may_be_sent = refresh.schedule("eyJ.fresh", 120, now)
    in_its_last_margin = refresh.schedule("eyJ.spent", 120, now - 119)
    outcomes.record(None, NetworkError("Maskinporten is down"), may_be_sent)
    outcomes.record(401, None, in_its_last_margin)
    outcomes.record(None, NetworkError("Maskinporten is down"), None)
    outcomes.record(200, None, may_be_sent)
    assert (outcomes.requests, outcomes.ok, outcomes.auth_failures) == (4, 1, 3)
    assert outcomes.auth_failures_with_valid_token == 1
