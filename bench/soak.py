"""The soak run of ``nox -s soak``: short-lived tokens, threads and tasks, faults at the token endpoint.

The run itself is :mod:`maskinporten_auth.testing.soak`, which the core's test suite also runs for ten seconds.

    python bench/soak.py                 # 3 minutes
    python bench/soak.py --seconds 20    # shorter
"""

from __future__ import annotations

import sys

from maskinporten_auth.testing.soak import main

if __name__ == "__main__":
    sys.exit(main())
