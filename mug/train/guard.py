"""Catching a diverging run without making the host wait for the device every step.

The step's loss and gradient norm are checked on the device. From the first non-finite one on, every optimiser
update is skipped there too: the fused AdamW kernel reads the flag itself, as it reads GradScaler's overflow flag.
The weights therefore stay those of the last good step until the host next reads the step's figures (at log and
checkpoint steps) and stops the run, and no checkpoint is ever written from a bad gradient."""

from __future__ import annotations

import math

import torch


class NonFiniteGuard:
    """`observe` each step's reduced loss and gradient norm, then `step` the optimiser through the guard.

    fp16's grad scaler skips steps with overflowing gradients by design (not failures), so with it only the loss
    is checked; it reads its flag on the host every step anyway, and so does an optimiser without a fused kernel
    (`reads_every_step`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, device: torch.device):
        self.optimizer, self.scaler = optimizer, scaler
        # The first bad step, its loss and its gradient norm (step -1: none yet), kept on the device.
        self.first_bad = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64, device=device)
        self.reads_every_step = scaler.is_enabled() or not optimizer.defaults.get("fused")

    def observe(self, loss: torch.Tensor, grad_norm: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss)
        if not self.scaler.is_enabled():
            bad |= ~torch.isfinite(grad_norm)
        now = torch.stack([torch.full_like(loss, step), loss, grad_norm]).double()
        self.first_bad = torch.where(bad & (self.first_bad[0] < 0), now, self.first_bad)

    def failure(self) -> str | None:
        """What went non-finite first, and at which step (the host waits for the device here)."""
        step, loss, grad_norm = self.first_bad.tolist()
        if step < 0:
            return None
        what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm}"
        return f"the {what} at step {int(step)}"

    def step(self) -> None:
        """The optimiser step, skipped on the device from the first bad step on."""
        if self.reads_every_step:
            if self.first_bad[0].item() < 0:  # the host read that `reads_every_step` owns up to
                self.scaler.step(self.optimizer)
                self.scaler.update()
            return
        self.optimizer.found_inf = (self.first_bad[0] >= 0).float()
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf
