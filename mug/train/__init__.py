"""Pre-training: the config, the loop, its checkpoints, and the torchx launcher."""
