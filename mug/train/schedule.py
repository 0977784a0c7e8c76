"""MAE's learning-rate schedule, per step: linear warm-up, then a half cosine down to `min_lr`."""

from __future__ import annotations

import math


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule: lr = base_lr x global batch / 256."""
    return base_lr * global_batch / 256


def lr_at(step: int, peak: float, total: int, warmup: int, floor: float = 0.0) -> float:
    """The learning rate of optimiser step `step` (0-based) of `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
