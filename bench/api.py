"""bench's public API for your own training code (docs/WORKLOADS.md).

A workload function takes a :class:`WorkloadContext` (and the suite's ``workload_args`` as
keyword arguments) and returns a :class:`Workload`; a suite names it as
``workload = "FILE.py:FUNCTION"``. :func:`run_cases` runs cases from Python with the isolation
of ``bench run`` and returns their records. Importing this module has no side effect beyond
importing torch (which your module does anyway): no process starts, no global setting changes.
"""

from bench.run.from_python import run_cases
from bench.workloads.interface import DataInfo, Workload, WorkloadContext

__all__ = ["DataInfo", "Workload", "WorkloadContext", "run_cases"]
