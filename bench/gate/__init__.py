"""Comparing result sets: compare, verdicts, significance, baselines, A/B. Torch-free."""
