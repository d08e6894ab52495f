"""Turn run records into a pandas frame, aggregate repeats, and present them as tables.

Torch-free on purpose, like all analysis code: ``load`` reads ``records.jsonl``, ``frame`` builds
the tidy frame and the per-case aggregate, ``tables`` renders rich and Markdown tables, and
``report`` ties them together into ``report.md``.
"""
