"""The rotation example in the "Keys: expiry and rotation" guide runs as written and prints what the page shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "key-rotation.md"


def runnable_blocks() -> list[tuple[str, str]]:
    """Each Python block not marked as a fragment, with the text block that follows it (its output)."""
    pattern = r"(<!-- fragment -->\n)?```python\n(.*?)^```\n\n```text\n(.*?)^```"
    found = re.findall(pattern, PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [(code, output) for fragment, code, output in found if not fragment]


def test_the_in_process_rotation_example_prints_what_the_guide_shows() -> None:
    ((code, output),) = runnable_blocks()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(PAGE), "exec"), {})
    lines = printed.getvalue().splitlines()
    shown = output.splitlines()
    assert lines[:2] == shown[:2] and lines[-5:] == shown[-5:]
    assert set(lines[2:-5]) == {"wait"}, "the new kid is unknown for the emulator's propagation delay"
