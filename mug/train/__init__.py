"""Pre-training: config, setup -> loop (the step in plain sight) -> finish, guard (a non-finite step caught on
the device), batches (the data position), state (checkpoints that resume exactly), distributed, launch (torchx),
tracking (W&B)."""
