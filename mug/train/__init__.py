"""Pre-training: the config, the run's set-up, the loop (its step in plain sight), the batches it reads, its
checkpoints, and the torchx launcher."""
