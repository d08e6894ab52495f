"""What to run: the Case, suites and the workload tables. Torch-free."""
