"""Workloads: the interface (interface.py), the dispatch from a case to its family (registry.py),
the families, their data and the image pipeline. They run in the worker process and import torch."""
