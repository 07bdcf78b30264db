"""Griffe extension of the documentation site (``extensions:`` in mkdocs.yml); not a page of it.

The docstrings cross-reference with Sphinx roles (``:class:`~maskinporten_auth.cache.TokenStore```), which
mkdocstrings does not read. This rewrites each role as an optional autorefs cross-reference, resolved the way Sphinx
resolves it (a bare name is looked up from the object the docstring belongs to): a link where the target is
documented on the site, plain code where it is not.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj):`(~?)\.?([\w.]+)`")


def _identifier(scope: griffe.Object, name: str) -> str:
    """The full path a name in this object's docstring refers to, or the name itself when it does not resolve."""
    first, _, rest = name.partition(".")
    try:
        path: str | None = scope.resolve(first)
    except griffe.NameResolutionError:
        path = _inherited(scope, first)
    if path is None:
        return name
    return f"{path}.{rest}" if rest else path


def _inherited(scope: griffe.Object, name: str) -> str | None:
    """The path of a member the nearest enclosing class inherits, which ``resolve`` does not look at."""
    enclosing: griffe.Object | None = scope
    while enclosing is not None and not isinstance(enclosing, griffe.Class):
        enclosing = enclosing.parent
    if enclosing is None or name not in enclosing.all_members:
        return None
    member = enclosing.all_members[name]
    return member.final_target.path if isinstance(member, griffe.Alias) else member.path


def _link_roles(scope: griffe.Object, text: str) -> str:
    def autoref(match: re.Match[str]) -> str:
        short, name = match.groups()
        title = name.rsplit(".", 1)[-1] if short else name
        return f'<autoref identifier="{html.escape(_identifier(scope, name))}" optional><code>{title}</code></autoref>'

    return _ROLE.sub(autoref, text)


def _documented_objects(scope: griffe.Object) -> list[griffe.Object]:
    objects = [scope]
    for member in scope.members.values():
        if not isinstance(member, griffe.Alias):  # an alias's target is visited in its own module
            objects.extend(_documented_objects(member))
    return objects


class SphinxRoles(griffe.Extension):
    """Turn the Sphinx roles of every docstring of a loaded package into autorefs cross-references."""

    def on_package(self, *, pkg: griffe.Module, **_: Any) -> None:
        """Rewrite the docstrings once the whole package is loaded, so that every name in it resolves."""
        for obj in _documented_objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _link_roles(obj, obj.docstring.value)
