"""Setting up a pre-training run, so that `mug.train.loop` holds the step and little else: the model with its
tokenizer's vocabulary, the weights it starts from (a resumed checkpoint, or `init_from`), the optimiser, the
data and the tracker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from mug.checkpoint import CheckpointError, check_same_model, load_checkpoint
from mug.config import ConfigError, ModelConfig
from mug.data.loading.loader import LoaderConfig, make_loader
from mug.errors import writing
from mug.history import HISTORY, read_history
from mug.lineage import code_version
from mug.models import Objective, build_model
from mug.optim import build_optimizer
from mug.tokenizer import CaptionTokenizer
from mug.train.batches import Batches
from mug.train.config import TrainConfig
from mug.train.distributed import DistEnv
from mug.train.schedule import scaled_lr
from mug.train.state import STATE, DataPosition, TrainState, latest_checkpoint, load_training_state, set_rng_state
from mug.train.tracking import Tracker

log = logging.getLogger("mug.train")
CHECKPOINTS = "checkpoints"


@dataclass
class Run:
    """Everything the loop needs. `forward` is `model` as the step calls it (compiled, DDP-wrapped)."""

    cfg: TrainConfig
    env: DistEnv
    out: Path
    model: Objective
    forward: Any
    model_cfg: ModelConfig
    tokenizer: CaptionTokenizer | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    peak_lr: float
    global_batch: int
    state: TrainState
    batches: Batches
    tracker: Tracker | None
    metadata: dict[str, Any]

    @property
    def checkpoints(self) -> Path:
        return self.out / CHECKPOINTS


def set_up(cfg: TrainConfig, resume: bool, env: DistEnv) -> Run:
    """The run `cfg` describes on this rank, at step 0 or, with `resume`, at its latest checkpoint."""
    out = Path(cfg.out)
    resume_from = latest_checkpoint(out / CHECKPOINTS) if resume else None
    if resume and resume_from is None:
        log.warning("--resume: no checkpoint under %s yet, starting from step 0", out / CHECKPOINTS)
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

    batches = Batches(_loader(cfg, model, model_cfg, tokenizer, env), state.position, cfg.data)
    forward = torch.compile(model) if cfg.compile else model
    if env.active:
        forward = DistributedDataParallel(forward, device_ids=[env.device] if env.device.type == "cuda" else None)
    metadata = {"train": cfg.to_dict(), "code_version": code_version(), "world_size": env.world_size}
    tracker = Tracker(out, cfg.wandb, cfg.wandb_project, cfg.run_name, metadata, history) if env.main else None
    if tracker is not None:
        tracker.rewrite()  # a resumed run forgets rows logged after its checkpoint
    return Run(
        cfg, env, out, model, forward, model_cfg, tokenizer, optimizer, scaler, peak_lr, global_batch, state,
        batches, tracker, metadata,
    )  # fmt: skip


def _loader(cfg: TrainConfig, model: Objective, model_cfg: ModelConfig, tokenizer, env: DistEnv):
    """This rank's loader, delivering what the objective reads."""
    return make_loader(
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


def resolve_tokenizer(cfg: TrainConfig, out: Path, env: DistEnv, start_from: Path | None) -> CaptionTokenizer:
    """The run's tokenizer: that of the checkpoint the weights come from (resumed or `init_from`: its embeddings
    are tied to it), else the file given, else one trained on the shards' captions."""
    from mug.data.tokenizer_corpus import train_tokenizer

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


def check_resumable(checkpoint: Path, cfg: TrainConfig, model_cfg: ModelConfig) -> None:
    """A checkpoint of another model cannot be resumed; other settings changed since are allowed, with a warning."""
    saved = check_same_model(checkpoint, model_cfg).get("train", {})
    for key in ("batch_size", "accum_steps", "seed", "data", "epoch_samples"):
        if key in saved and saved[key] != cfg.to_dict()[key]:
            log.warning(
                "resuming with %s=%r (was %r): the run will not repeat an uninterrupted one",
                key,
                cfg.to_dict()[key],
                saved[key],
            )


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
