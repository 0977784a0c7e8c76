"""The pre-training loop: set up (`mug.train.setup`) -> the step, in plain sight (schedule, forward, backward,
clip, check, optimiser step, log, checkpoint) -> finish (the final model and the run summary).

Exact resume: a checkpoint stores the optimiser, the scaler, torch's RNG state and the data position (loader epoch
and micro-batches consumed); a resumed run restores them and replays the epoch up to that position (the loader is
seeded per epoch), so on CPU it ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from tqdm import tqdm

from mug.checkpoint import CheckpointError, save_checkpoint
from mug.data.loading.augment import normalize
from mug.data.loading.device_crop import crop_batch
from mug.errors import UserError, writing
from mug.history import HISTORY
from mug.models import MaskedGenerative, Objective
from mug.tokenizer import CaptionTokenizer
from mug.train.config import TrainConfig
from mug.train.distributed import DistEnv, all_gather_objects, all_reduce_mean, all_reduce_sum, init_distributed
from mug.train.distributed import shutdown as shutdown_distributed
from mug.train.guard import NonFiniteGuard
from mug.train.schedule import lr_at
from mug.train.setup import Run, set_up
from mug.train.state import TrainState, latest_checkpoint, rng_state, save_training_checkpoint
from mug.train.tracking import Tracker

FINAL, SUMMARY = "model", "summary.json"


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


class TrainingStopped(UserError):
    """SIGTERM (a preempted pod, `kill`, Ctrl-C's cousin) arrived: the run saved a checkpoint and stopped."""


@contextlib.contextmanager
def stop_on_sigterm():
    """A flag that SIGTERM sets instead of killing the process, so the step in flight can finish and be saved.
    Signals can only be caught in the main thread: elsewhere (a pipeline runner's thread) the flag stays unset."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: requested.set())
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class TrainResult:
    model_dir: Path
    steps: int
    final_losses: dict[str, float]
    images_per_s: float
    seconds: float
    skipped: dict[str, int]


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _to_device(batch: dict[str, Any], inputs: tuple[str, ...], device: torch.device, size: int) -> dict[str, Any]:
    """The objective's inputs on the device; uint8 images (what the loader delivers off CPU: a quarter of the bytes
    to move and no float conversion in the workers) are normalised there, and cropped there first when the loader
    left that to the device (its batches then carry "boxes")."""
    moved = {k: batch[k].to(device, non_blocking=True) for k in inputs}
    if "boxes" in batch:
        moved["image"] = crop_batch(moved["image"], batch["boxes"].to(device, non_blocking=True), size)
    return {k: normalize(v) if v.dtype == torch.uint8 else v for k, v in moved.items()}


def _tokens_per_batch(micro: list[dict[str, Any]], model: Objective, env: DistEnv) -> torch.Tensor | None:
    """The step's average real caption-token count per micro-batch, over all micro-batches and ranks: a tensor
    on the device, so that neither counting nor the ranks' sum makes the host wait."""
    if not isinstance(model, MaskedGenerative) or model.caption_decoder is None:
        return None
    pad = model.cfg.text.pad_id
    count = sum((b["tokens"][:, 1:] != pad).sum(dtype=torch.float64) for b in micro)
    # float32, the loss's dtype: a float64 divisor would promote the caption loss (and its backward) to float64.
    return (all_reduce_sum(count, env) / (len(micro) * env.world_size)).float()


def _sample(model: Objective, batch: dict[str, Any], tokenizer: CaptionTokenizer | None, tracker: Tracker, step: int):
    """A reconstruction strip and a generated caption for the batch's first image, when the objective has them."""
    from mug.demo import caption_demo

    if not isinstance(model, MaskedGenerative) or model.pixel_decoder is None:
        return
    result = caption_demo(model, tokenizer, batch["image"][0])
    model.train()
    reference = tokenizer.decode(batch["tokens"][0].tolist()) if "tokens" in batch and tokenizer else None
    tracker.log_samples(step, result.strip, result.caption, reference)


def train(cfg: TrainConfig, resume: bool = False) -> TrainResult:
    """Run (or, with `resume`, continue) the pre-training `cfg` describes; returns where the model went."""
    cfg.validate()
    env = init_distributed(cfg.device)
    try:
        with stop_on_sigterm() as stop:
            return _train(cfg, resume, env, stop)
    finally:
        shutdown_distributed(env)


def _train(cfg: TrainConfig, resume: bool, env: DistEnv, stop: threading.Event) -> TrainResult:
    run = set_up(cfg, resume, env)
    model, optimizer, scaler = run.model, run.optimizer, run.scaler
    first_keys, losses, throughput = None, {}, Throughput()
    guard = NonFiniteGuard(optimizer, scaler, env.device)
    bar = tqdm(
        range(run.state.step, cfg.steps),
        initial=run.state.step,
        total=cfg.steps,
        desc=f"pretrain {cfg.objective}",
        disable=not env.main,
        unit="step",
        dynamic_ncols=True,
    )
    model.train()
    for step in bar:
        lr = lr_at(step, run.peak_lr, cfg.steps, cfg.warmup, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        raw = [run.batches.next() for _ in range(cfg.accum_steps)]
        first_keys = first_keys or raw[0]["key"][:4]
        micro = [_to_device(b, model.inputs, env.device, run.model_cfg.encoder.img_size) for b in raw]
        tokens_per_batch = _tokens_per_batch(micro, model, env)
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            no_sync = run.forward.no_sync() if env.active and not last else contextlib.nullcontext()
            with no_sync:
                with _autocast(cfg, env.device):
                    parts = run.forward(batch, tokens_per_batch=tokens_per_batch)
                scaler.scale(parts["loss"] / cfg.accum_steps).backward()
            for name, value in parts.items():
                sums[name] = sums.get(name, 0) + value.detach().float() / cfg.accum_steps
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad or math.inf)
        names = sorted(sums)
        figures = all_reduce_mean(torch.stack([sums[n] for n in names] + [grad_norm.float()]), env)
        done = step + 1
        guard.observe(figures[names.index("loss")], figures[-1], done)
        guard.step()  # skipped on the device after a non-finite loss or gradient
        model.after_optimizer_step()
        optimizer.zero_grad(set_to_none=True)
        throughput.add(run.global_batch)

        saving = done % cfg.ckpt_every == 0 or done == cfg.steps
        if not (saving or done % cfg.log_every == 0 or guard.reads_every_step):
            continue  # the host queues the next step without waiting for this one
        losses, grad_norm, stopping = _read(figures, names, guard, stop, env, done, run)
        if env.main and (done % cfg.log_every == 0 or done == cfg.steps):
            row = {"step": done, **losses, "lr": lr, "grad_norm": grad_norm, "images_per_s": throughput.rate()}
            run.tracker.log(row)
            bar.set_postfix(loss=f"{losses['loss']:.4f}", img_s=f"{throughput.last:.0f}", lr=f"{lr:.2e}")
        if env.main and cfg.sample_every and done % cfg.sample_every == 0:
            _sample(model, micro[0], run.tokenizer, run.tracker, done)
        if saving or stopping:
            _save(run, done)
        if stopping and done < cfg.steps:
            bar.close()
            raise TrainingStopped(
                f"stopped by SIGTERM after step {done} of {cfg.steps}; checkpoint {run.checkpoints}/step-{done:08d} "
                f"(--resume continues)"
            )
    bar.close()
    return _finish(run, losses, throughput, first_keys)


def _read(figures, names, guard: NonFiniteGuard, stop: threading.Event, env: DistEnv, done: int, run: Run):
    """The only place the host waits for the device: the step's losses and gradient norm, whether a step went
    non-finite (the run stops, its weights still the last good step's), and whether any rank got SIGTERM (one
    collective, so that all stop together, within `log_every` steps of the signal)."""
    values = figures.tolist()
    losses, grad_norm = dict(zip(names, values[:-1], strict=True)), values[-1]
    failure = guard.failure()
    if failure:
        raise TrainingDiverged(
            f"{failure}; stopped, the weights still those of the step before. Last good checkpoint: "
            f"{latest_checkpoint(run.checkpoints) or 'none yet'} (resume from it with --resume and a lower base_lr)"
        )
    stopping = all_reduce_sum(torch.full((), float(stop.is_set()), device=env.device), env)
    return losses, grad_norm, bool(stopping > 0)


class Throughput:
    """Images per second since the last reading (what the log shows), and the whole run's time."""

    def __init__(self):
        self.started = self.tick = time.perf_counter()
        self.images, self.last = 0, 0.0

    def add(self, images: int) -> None:
        self.images += images

    def rate(self) -> float:
        now = time.perf_counter()
        self.last = self.images / (now - self.tick) if now > self.tick else 0.0
        self.tick, self.images = now, 0
        return self.last


def _finish(run: Run, losses: dict[str, float], throughput: Throughput, first_keys) -> TrainResult:
    """The final model, the run summary (with each rank's data position, which the DDP tests read) and W&B's
    last words."""
    cfg, env = run.cfg, run.env
    seconds = time.perf_counter() - throughput.started
    ranks = all_gather_objects(
        {"rank": env.rank, "first_keys": first_keys, "position": run.batches.position.__dict__}, env
    )
    model_dir = run.out / FINAL
    if env.main:
        try:
            save_checkpoint(
                model_dir,
                run.model,
                run.tokenizer,
                run.metadata | {"step": cfg.steps, "final_losses": losses},
                extra=lambda d: (d / HISTORY).write_text(run.tracker.path.read_text()),
            )
        except (OSError, SafetensorError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise CheckpointError(
                f"could not write the model to {model_dir} ({reason}); "
                f"the weights are in {latest_checkpoint(run.checkpoints) or 'no checkpoint'}"
            ) from err
        summary = {
            "steps": cfg.steps,
            "final_losses": losses,
            "images_per_s": throughput.last,
            "seconds": seconds,
            "skipped": run.batches.skipped,
            "ranks": ranks,
            "model": str(model_dir),
            **run.metadata,
        }
        with writing("the run summary"):
            (run.out / SUMMARY).write_text(json.dumps(summary, indent=2))
        run.tracker.finish({"final/" + k: v for k, v in losses.items()})
    return TrainResult(model_dir, cfg.steps, losses, throughput.last, seconds, run.batches.skipped)


def _save(run: Run, done: int) -> None:
    """A training checkpoint of step `done` (every rank's RNG state, written by the first). One that cannot be
    written stops the run with one line; the previous one is untouched."""
    state = TrainState(
        done,
        run.batches.position,
        run.optimizer.state_dict(),
        run.scaler.state_dict() if run.scaler.is_enabled() else None,
        all_gather_objects(rng_state(), run.env),
    )
    if not run.env.main:
        return
    metadata = run.metadata | {"step": done}
    try:
        save_training_checkpoint(
            run.checkpoints, run.model, run.tokenizer, state, run.tracker.history, metadata, run.cfg.keep_last
        )
    except (OSError, SafetensorError) as err:  # safetensors reports a failed write as its own error
        previous = latest_checkpoint(run.checkpoints)
        reason = getattr(err, "strerror", None) or str(err)
        raise CheckpointError(
            f"could not write the checkpoint of step {done} under {run.checkpoints} ({reason}); "
            f"the last good one is {previous or 'none'}"
        ) from err
