"""The process of one case: building its training step, the phases, the result; ranks."""
