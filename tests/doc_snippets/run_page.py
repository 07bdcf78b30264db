"""Run one page's Python blocks in order, in one namespace, as a reader pastes them into one module.

``python run_page.py BLOCKS.json``: the file holds ``[[label, first_line, code], ...]``; each block is compiled
with its page's name and line numbers, so that a traceback points into the page.
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    with open(path, encoding="utf-8") as file:
        blocks = json.load(file)
    namespace: dict[str, object] = {"__name__": "__main__"}
    for label, first_line, code in blocks:
        print(f"--- {label}:{first_line}", flush=True)
        exec(compile("\n" * (first_line - 1) + code, label, "exec"), namespace)


if __name__ == "__main__":
    main(sys.argv[1])
