"""Griffe extension of the documentation site (``extensions:`` in mkdocs.yml); not a page of it.

A parameter whose default is a module constant (``max_in_flight=DEFAULT_MAX_IN_FLIGHT``) is shown with the
constant's value (``max_in_flight=32``): the reader of a signature wants the number, not a name to look up.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe


def _value(name: griffe.ExprName) -> str | None:
    """The literal value of the constant ``name`` refers to, or None for anything that is not one."""
    try:
        target = name.parent.modules_collection[name.canonical_path] if name.parent is not None else None
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    if isinstance(target, griffe.Alias):
        target = target.final_target
    if not isinstance(target, griffe.Attribute) or target.value is None:
        return None
    value = str(target.value)
    try:
        ast.literal_eval(value)
    except (ValueError, SyntaxError):  # an expression, not a literal: the name says more
        return None
    return value


def _functions(scope: griffe.Object) -> list[griffe.Function]:
    found = [scope] if isinstance(scope, griffe.Function) else []
    for member in scope.members.values():
        if not isinstance(member, griffe.Alias):
            found.extend(_functions(member))
    return found


class ConstantDefaults(griffe.Extension):
    """Show the value of a constant that a parameter's default names."""

    def on_package(self, *, pkg: griffe.Module, **_: Any) -> None:
        """Replace the defaults once the whole package is loaded, so that every name resolves."""
        for function in _functions(pkg):
            for parameter in function.parameters:
                if isinstance(parameter.default, griffe.ExprName):
                    parameter.default = _value(parameter.default) or parameter.default
