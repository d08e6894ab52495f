"""A test hook: ``bench`` signals itself at a named point, as if the signal came from outside then.

``BENCH_TEST_SIGNAL_AT=POINT[:N]`` makes the ``bench`` process send itself
``BENCH_TEST_SIGNAL`` (``INT``, the default, or ``TERM``) the ``N``-th time (default 1) it
reaches ``POINT``, so that tests can stop a sweep at exactly that moment instead of racing it:

- ``fork-server``: while the fork server is being started (stops are held there);
- ``env``: as the environment is collected, before any case;
- ``start``: while a case's process is being forked (stops are held there);
- ``running``: a case's process started, the launcher waiting for it;
- ``record``: a record written to ``records.jsonl``, not yet fsynced;
- ``between``: a record written and reported, before the next case starts.

Unset, :func:`reached` costs one dictionary lookup. Torch-free; used only by tests.
"""

import os
import signal
from collections import Counter

POINTS = ("fork-server", "env", "start", "running", "record", "between")
_counts: Counter[str] = Counter()


def reached(point: str) -> None:
    """Signal this process if ``BENCH_TEST_SIGNAL_AT`` names ``point`` and this is its N-th time."""
    assert point in POINTS, point
    wanted = os.environ.get("BENCH_TEST_SIGNAL_AT")
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != point:
        return
    _counts[point] += 1
    if _counts[point] == int(count or 1):
        number = signal.Signals[f"SIG{os.environ.get('BENCH_TEST_SIGNAL', 'INT')}"]
        os.kill(os.getpid(), number)
