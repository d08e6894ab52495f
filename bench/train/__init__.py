"""Training: precision, compile, optimizers, losses, schedules, LoRA, fine-tuning."""
