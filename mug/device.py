"""Which device a process computes on: shared by training, evaluation and the demos."""

from __future__ import annotations

import os

import torch

from mug.config import ConfigError


def pick_device(name: str) -> torch.device:
    """'auto' is this process's GPU (LOCAL_RANK) when there is one, else the CPU."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA GPU")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return torch.device("cpu")
