"""What is measured: timing, the window, memory, FLOPs, MFU, targets."""
