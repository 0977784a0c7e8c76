"""The pre-training loop. The step stays in plain sight in `train` (schedule, forward, backward, clip, optimiser
step); data position, checkpoints and logging are small helpers around it.

Exact resume: a checkpoint stores the optimiser, the scaler, torch's RNG state and the data position (loader epoch
and micro-batches consumed); a resumed run restores them and replays the epoch up to that position (the loader is
seeded per epoch), so on CPU it ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mug.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from mug.config import ConfigError
from mug.data.augment import normalize
from mug.data.device_crop import crop_batch
from mug.data.loader import Loader, LoaderConfig, make_loader
from mug.errors import UserError, writing
from mug.history import HISTORY, read_history
from mug.lineage import code_version
from mug.models import MaskedGenerative, Objective, build_model
from mug.optim import build_optimizer
from mug.tokenizer import CaptionTokenizer
from mug.train.config import TrainConfig
from mug.train.distributed import DistEnv, all_gather_objects, all_reduce_mean, all_reduce_sum, init_distributed
from mug.train.distributed import shutdown as shutdown_distributed
from mug.train.schedule import lr_at, scaled_lr
from mug.train.state import (
    STATE,
    DataPosition,
    TrainState,
    latest_checkpoint,
    load_training_state,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from mug.train.tracking import Tracker

log = logging.getLogger("mug.train")
CHECKPOINTS, FINAL, SUMMARY = "checkpoints", "model", "summary.json"


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


class Batches:
    """Endless micro-batches, epoch after epoch, that know the position to resume from."""

    def __init__(self, loader: Loader, position: DataPosition, urls: list[str]):
        self.loader, self.position, self.urls = loader, DataPosition(position.epoch, position.batches), urls
        self.skipped: dict[str, int] = {}
        self._stream = None

    def next(self) -> dict[str, Any]:
        while True:
            if self._stream is None:
                self.loader.set_epoch(self.position.epoch)
                self._stream = iter(self.loader)
                for _ in range(self.position.batches):  # replay a resumed epoch up to where it stopped
                    if next(self._stream, None) is None:
                        raise UserError(f"cannot resume: epoch {self.position.epoch} of {self.urls} is shorter now")
            batch = next(self._stream, None)
            if batch is not None:
                self.position.batches += 1
                return batch
            for reason, n in self.loader.stats.counts.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + n
            if self.position.batches == 0:
                raise UserError(self._no_batch())
            self.position, self._stream = DataPosition(self.position.epoch + 1, 0), None

    def _no_batch(self) -> str:
        """Why an epoch gave no batch: no usable sample at all, or fewer than a batch (in each worker)."""
        shards, size, usable = ", ".join(self.urls), self.loader.cfg.batch_size, self.loader.stats.dropped
        skipped = f" (skipped: {self.skipped})" if self.skipped else ""
        if not usable:
            return f"the shards {shards} yielded no usable samples{skipped}"
        if usable < size:
            return f"batch_size {size} > the {usable} samples available in {shards}{skipped}: lower batch_size"
        workers = self.loader.cfg.num_workers
        return (
            f"batch_size {size} > the samples each of the {workers} loader workers reads ({usable} in all, split by "
            f"shard) in {shards}{skipped}: lower batch_size or num_workers"
        )


def resolve_tokenizer(cfg: TrainConfig, out: Path, env: DistEnv, start_from: Path | None) -> CaptionTokenizer:
    """The run's tokenizer: that of the checkpoint the weights come from (resumed or `init_from`: its embeddings
    are tied to it), else the file given, else one trained on the shards' captions."""
    from mug.data.captions import train_tokenizer

    if start_from is not None:
        if cfg.tokenizer is not None:
            log.warning(
                "using the tokenizer of %s, not %s: the weights were trained with it", start_from, cfg.tokenizer
            )
        return CaptionTokenizer.from_file(start_from / "tokenizer.json")
    if cfg.tokenizer is not None:
        if not Path(cfg.tokenizer).is_file():
            raise ConfigError(f"tokenizer file {cfg.tokenizer} does not exist")
        return CaptionTokenizer.from_file(cfg.tokenizer)
    path = out / "tokenizer.json"
    if env.main:
        log.info("no tokenizer given: training one on the captions of %s", cfg.data)
        train_tokenizer(cfg.data, path, vocab_size=cfg.model_config().text.vocab_size)
    if env.active:
        torch.distributed.barrier()
    return CaptionTokenizer.from_file(path)


def check_same_model(checkpoint: Path, model_cfg) -> dict:
    """The checkpoint's metadata, after checking that its model is this run's (the first difference is named)."""
    saved_model, metadata = read_config(checkpoint)
    if saved_model.to_dict() != model_cfg.to_dict():
        diff = _first_difference(saved_model.to_dict(), model_cfg.to_dict())
        raise CheckpointError(f"cannot start from {checkpoint}: its model differs from this run's ({diff})")
    return metadata


def check_resumable(checkpoint: Path, cfg: TrainConfig, model_cfg) -> None:
    saved = check_same_model(checkpoint, model_cfg).get("train", {})
    for key in ("batch_size", "accum_steps", "seed", "data", "epoch_samples"):
        if key in saved and saved[key] != cfg.to_dict()[key]:
            log.warning(
                "resuming with %s=%r (was %r): the run will not repeat an uninterrupted one",
                key,
                cfg.to_dict()[key],
                saved[key],
            )


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            found = _first_difference(a[key], b[key], f"{prefix}{key}.")
            if found:
                return found
        elif a.get(key) != b.get(key):
            return f"{prefix}{key}: checkpoint {a.get(key)!r}, run {b.get(key)!r}"
    return ""


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


def _tokens_per_batch(micro: list[dict[str, Any]], model: Objective, env: DistEnv) -> float | None:
    """The step's average real caption-token count per micro-batch, over all micro-batches and ranks. Counted on
    the loader's CPU tensors, so a single GPU process waits for nothing; ranks add theirs up on the device."""
    if not isinstance(model, MaskedGenerative) or model.caption_decoder is None:
        return None
    pad = model.cfg.text.pad_id
    count = sum(int((b["tokens"][:, 1:] != pad).sum()) for b in micro)
    if env.active:
        count = all_reduce_sum(torch.tensor(count, dtype=torch.float64, device=env.device), env).item()
    return count / (len(micro) * env.world_size)


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
    out = Path(cfg.out)
    ckpt_root = out / CHECKPOINTS
    resume_from = latest_checkpoint(ckpt_root) if resume else None
    if resume and resume_from is None:
        log.warning("--resume: no checkpoint under %s yet, starting from step 0", ckpt_root)
    if cfg.precision == "fp16" and env.device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA GPU (its grad scaler); use bf16 on the CPU")
    if cfg.crop_on_device and env.device.type == "cpu":
        log.warning("crop_on_device on the CPU: its dense batched resize costs ~7 ms a 224 px image there, the "
                    "workers' crop 0.09 ms; it pays on a GPU")  # fmt: skip
    with writing("the run directory"):
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg.model_config())
    init_from = Path(cfg.init_from) if cfg.init_from and resume_from is None else None
    start_from = resume_from or init_from
    tokenizer = resolve_tokenizer(cfg, out, env, start_from) if "tokens" in model.inputs else None
    model_cfg = cfg.model_config(tokenizer.vocab_size, tokenizer.pad_id) if tokenizer else model.cfg
    if model_cfg != model.cfg:  # the text model takes the tokenizer's vocabulary
        torch.manual_seed(cfg.seed)
        model = build_model(model_cfg)
    model = model.to(env.device)
    torch.manual_seed(cfg.seed + env.rank)  # ranks draw different masks; DDP keeps the weights in step

    global_batch = cfg.batch_size * cfg.accum_steps * env.world_size
    peak_lr = scaled_lr(cfg.base_lr, global_batch)
    optimizer = build_optimizer(model, lr=peak_lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    scaler = torch.amp.GradScaler(env.device.type, enabled=cfg.precision == "fp16")
    state = TrainState(0, DataPosition(), {}, None, [])
    history: list[dict[str, float]] = []
    if init_from is not None:  # continue pre-training a trained model (a retraining run): new optimiser, step 0
        check_same_model(init_from, model_cfg)
        model.load_state_dict(load_checkpoint(init_from, env.device)[0].state_dict())
        log.info("initialised the weights from %s", init_from)
    if resume_from is not None:
        check_resumable(resume_from, cfg, model_cfg)
        model.load_state_dict(load_checkpoint(resume_from, env.device)[0].state_dict())
        state = load_training_state(resume_from)
        _restore(state, optimizer, scaler, env, resume_from / STATE)
        history = read_history(resume_from / HISTORY)
        log.info("resumed from %s at step %d", resume_from, state.step)

    loader = make_loader(
        LoaderConfig(
            urls=cfg.data,
            batch_size=cfg.batch_size,
            image_size=model_cfg.encoder.img_size,
            inputs=model.inputs,
            context_length=model_cfg.text.context_length,
            shuffle_buffer=cfg.shuffle_buffer,
            epoch_samples=cfg.epoch_samples,
            num_workers=cfg.num_workers,
            seed=cfg.seed,
            pin_memory=env.device.type == "cuda",
            normalize=env.device.type == "cpu" and not cfg.crop_on_device,
            crop_on_device=cfg.crop_on_device,
            canvas_size=cfg.canvas_size,
            crop_scale=cfg.crop_scale,
            flip=cfg.flip,
        ),
        tokenizer,
        env.rank,
        env.world_size,
    )
    batches = Batches(loader, state.position, cfg.data)
    forward = torch.compile(model) if cfg.compile else model
    if env.active:
        forward = DistributedDataParallel(forward, device_ids=[env.device] if env.device.type == "cuda" else None)

    metadata = {"train": cfg.to_dict(), "code_version": code_version(), "world_size": env.world_size}
    tracker = Tracker(out, cfg.wandb, cfg.wandb_project, cfg.run_name, metadata, history) if env.main else None
    if tracker is not None:
        tracker.rewrite()  # a resumed run forgets rows logged after its checkpoint
    first_keys = None
    losses: dict[str, float] = {}
    images_per_s = 0.0
    tick, images_since = time.perf_counter(), 0
    started = time.perf_counter()
    bar = tqdm(
        range(state.step, cfg.steps),
        initial=state.step,
        total=cfg.steps,
        desc=f"pretrain {cfg.objective}",
        disable=not env.main,
        unit="step",
        dynamic_ncols=True,
    )
    model.train()
    for step in bar:
        lr = lr_at(step, peak_lr, cfg.steps, cfg.warmup, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        raw = [batches.next() for _ in range(cfg.accum_steps)]
        first_keys = first_keys or raw[0]["key"][:4]
        micro = [_to_device(b, model.inputs, env.device, model_cfg.encoder.img_size) for b in raw]
        tokens_per_batch = _tokens_per_batch(raw, model, env)
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            no_sync = forward.no_sync() if env.active and not last else contextlib.nullcontext()
            with no_sync:
                with _autocast(cfg, env.device):
                    parts = forward(batch, tokens_per_batch=tokens_per_batch)
                scaler.scale(parts["loss"] / cfg.accum_steps).backward()
            for name, value in parts.items():
                sums[name] = sums.get(name, 0) + value.detach().float() / cfg.accum_steps
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad or math.inf)
        names = sorted(sums)
        # One collective per step carries the losses, the gradient norm and whether any rank was asked to stop.
        stopping = grad_norm.new_tensor(float(stop.is_set()))
        values = all_reduce_mean(torch.stack([sums[n] for n in names] + [grad_norm.float(), stopping]), env).tolist()
        losses, grad_norm, stopping = dict(zip(names, values[:-2], strict=True)), values[-2], values[-1] > 0
        # Checked before the update, so no step from a bad gradient reaches the weights (fp16's scaler skips
        # steps with overflowing gradients by design: those are not failures).
        if not math.isfinite(losses["loss"]) or not (math.isfinite(grad_norm) or scaler.is_enabled()):
            what = f"loss is {losses['loss']}" if not math.isfinite(losses["loss"]) else f"gradient norm is {grad_norm}"
            raise TrainingDiverged(
                f"the {what} at step {step + 1}; stopped. Last good checkpoint: "
                f"{latest_checkpoint(ckpt_root) or 'none yet'} (resume from it with --resume and a lower base_lr)"
            )
        scaler.step(optimizer)
        scaler.update()
        model.after_optimizer_step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        images_since += global_batch
        if env.main and (done % cfg.log_every == 0 or done == cfg.steps):
            elapsed = time.perf_counter() - tick
            images_per_s = images_since / elapsed if elapsed > 0 else 0.0
            tick, images_since = time.perf_counter(), 0
            row = {"step": done, **losses, "lr": lr, "grad_norm": grad_norm, "images_per_s": images_per_s}
            tracker.log(row)
            bar.set_postfix(loss=f"{losses['loss']:.4f}", img_s=f"{images_per_s:.0f}", lr=f"{lr:.2e}")
        if env.main and cfg.sample_every and done % cfg.sample_every == 0:
            _sample(model, micro[0], tokenizer, tracker, done)
        if done % cfg.ckpt_every == 0 or done == cfg.steps or stopping:
            state = TrainState(
                done,
                batches.position,
                optimizer.state_dict(),
                scaler.state_dict() if scaler.is_enabled() else None,
                all_gather_objects(rng_state(), env),
            )
            if env.main:
                _save(ckpt_root, model, tokenizer, state, tracker.history, metadata | {"step": done}, cfg.keep_last)
        if stopping and done < cfg.steps:
            bar.close()
            raise TrainingStopped(
                f"stopped by SIGTERM after step {done} of {cfg.steps}; checkpoint {ckpt_root}/step-{done:08d} "
                f"(--resume continues)"
            )
    bar.close()

    seconds = time.perf_counter() - started
    ranks = all_gather_objects({"rank": env.rank, "first_keys": first_keys, "position": batches.position.__dict__}, env)
    model_dir = out / FINAL
    if env.main:
        try:
            save_checkpoint(
                model_dir,
                model,
                tokenizer,
                metadata | {"step": cfg.steps, "final_losses": losses},
                extra=lambda d: (d / HISTORY).write_text(tracker.path.read_text()),
            )
        except (OSError, SafetensorError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise CheckpointError(
                f"could not write the model to {model_dir} ({reason}); "
                f"the weights are in {latest_checkpoint(ckpt_root) or 'no checkpoint'}"
            ) from err
        summary = {
            "steps": cfg.steps,
            "final_losses": losses,
            "images_per_s": images_per_s,
            "seconds": seconds,
            "skipped": batches.skipped,
            "ranks": ranks,
            "model": str(model_dir),
            **metadata,
        }
        with writing("the run summary"):
            (out / SUMMARY).write_text(json.dumps(summary, indent=2))
        tracker.finish({"final/" + k: v for k, v in losses.items()})
    return TrainResult(model_dir, cfg.steps, losses, images_per_s, seconds, batches.skipped)


def _restore(state: TrainState, optimizer, scaler, env: DistEnv, path: Path) -> None:
    """Optimiser, grad scaler and this rank's RNG from a training state that must have been saved by this run."""
    if len(state.rng) < env.world_size:  # every rank sees it, so none waits for the others in vain
        raise CheckpointError(
            f"{path} holds the RNG states of {len(state.rng)} process(es), too few for {env.world_size}: "
            "resume with at most as many processes"
        )
    try:
        optimizer.load_state_dict(state.optimizer)
        if state.scaler:
            scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng[env.rank])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} does not fit this run's optimiser ({type(err).__name__}: {err})") from err


def _save(root: Path, model, tokenizer, state: TrainState, history, metadata, keep_last: int) -> None:
    """A checkpoint that cannot be written stops the run with one line; the previous one is untouched."""
    try:
        save_training_checkpoint(root, model, tokenizer, state, history, metadata, keep_last)
    except (OSError, SafetensorError) as err:  # safetensors reports a failed write as its own error
        previous = latest_checkpoint(root)
        reason = getattr(err, "strerror", None) or str(err)
        raise CheckpointError(
            f"could not write the checkpoint of step {state.step} under {root} ({reason}); "
            f"the last good one is {previous or 'none'}"
        ) from err
