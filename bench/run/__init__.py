"""Where and how a case is isolated: the sweep, executors, launcher, torchrun. Torch-free."""
