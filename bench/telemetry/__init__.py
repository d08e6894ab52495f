"""Telemetry of the measured window: host and GPU samplers, energy, and the window's timeline."""
