"""``maskinporten --version``: the version of the package and of each backend installed beside it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["VersionAction", "installed_versions"]

CORE = "maskinporten-auth"


def installed_versions() -> list[tuple[str, str]]:
    """The core's version, then each installed backend's (the distributions named ``maskinporten-auth-*``)."""
    from importlib import metadata

    backends = set()
    for distribution in metadata.distributions():
        name = (distribution.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(f"{CORE}-"):
            backends.add((name, distribution.version))
    return [(CORE, metadata.version(CORE)), *sorted(backends)]


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
