"""Fit one fixed batch: the quickest proof that an objective's wiring can learn (used by tests and the demo)."""

from __future__ import annotations

import torch
from tqdm import tqdm

from mug.models import Objective
from mug.optim import build_optimizer


def fit_batch(
    model: Objective, batch: dict[str, torch.Tensor], steps: int, lr: float = 1e-3, progress: bool = False
) -> list[dict[str, float]]:
    """Train `model` on `batch` for `steps` AdamW steps (fresh masks each step); returns the loss history."""
    optimizer = build_optimizer(model, lr=lr, weight_decay=0.0)
    model.train()
    history = []
    for _ in tqdm(range(steps), desc="fit", disable=not progress, leave=False):
        losses = model(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        model.after_optimizer_step()
        history.append({k: v.item() for k, v in losses.items()})
    return history
