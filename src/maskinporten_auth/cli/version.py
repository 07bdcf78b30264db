"""``maskinporten --version``: the version of the package and of each backend installed beside it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["VersionAction", "installed_versions"]

CORE = "maskinporten-auth"
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def installed_versions() -> list[tuple[str, str]]:
    """The core's version, then that of each backend its extras name that is installed."""
    from importlib import metadata

    backends = set()
    for requirement in metadata.requires(CORE) or ():
        name = _REQUIREMENT_NAME.match(requirement)
        if name is not None and name.group().lower().startswith(f"{CORE}-"):
            backends.add(name.group().lower())
    versions = [(CORE, metadata.version(CORE))]
    for backend in sorted(backends):
        try:
            versions.append((backend, metadata.version(backend)))
        except metadata.PackageNotFoundError:
            continue
    return versions


class VersionAction(argparse.Action):
    """Print one ``name version`` line per installed distribution of the project, and exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> NoReturn:
        """Print the versions and exit with status 0."""
        for name, version in installed_versions():
            print(name, version)
        parser.exit()
