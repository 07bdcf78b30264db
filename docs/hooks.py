"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml); not a page of it."""

from __future__ import annotations

import re
from typing import Any

# A Sphinx role as mkdocstrings renders it from a docstring: :class:<code>~maskinporten_auth.cache.TokenStore</code>.
_ROLE = re.compile(r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj):<code>(~?)([\w.]+)</code>")


def _as_sphinx_shows_it(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **_: Any) -> str:
    """Show the Sphinx roles in docstrings as code, the way Sphinx would (``~`` keeps the last name only)."""
    return _ROLE.sub(_as_sphinx_shows_it, html)
