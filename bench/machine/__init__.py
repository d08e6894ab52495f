"""The machine: environment, NVML inventory, datasheet peaks, the project root. Torch-free."""
