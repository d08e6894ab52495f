"""Turn run records into a pandas frame, aggregate repeats, and present them: tables, figures,
the FAQ, the HTML page, and bench estimate's cost model. Torch-free on purpose, like all
analysis code (docs/REPORT.md)."""
