"""Workload families. ``catalog`` is torch-free; ``workload.build`` makes the torch objects."""
