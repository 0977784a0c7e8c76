"""What a pre-training run needs to know: one dataclass, from defaults, a YAML file and `key=value` overrides."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mug.config import ConfigError, ModelConfig, build_config, read_config_file
from mug.data.loading.augment import check_crop_scale
from mug.fields import check

PRECISIONS = ("fp32", "bf16", "fp16")
_MODEL_FIELD = re.compile(rf"(?<![\w.])({'|'.join(f.name for f in dataclasses.fields(ModelConfig))})\.")
WANDB_MODES = ("offline", "online", "disabled")
CONTRASTIVE = ("simclr", "clip")  # their loss is over the whole batch, so micro-batches cannot be accumulated


@dataclass
class TrainConfig:
    """A run: model (objective, preset, `model` overrides), data, recipe, checkpointing and logging.

    `batch_size` is per process and micro-step; the global batch is batch_size x accum_steps x world size, and
    lr = base_lr x global batch / 256 (MAE's scaling rule). `accum_steps` > 1 is refused for the contrastive
    objectives (simclr, clip): each micro-batch's loss would contrast against its own samples only, fewer
    negatives than the global batch the learning rate assumes (ranks are gathered; micro-steps cannot be).
    `warmup_steps` None means 5% of `steps`.
    `init_from`: a checkpoint directory whose weights (and tokenizer) start the run, e.g. the production model
    for a retraining run; the optimiser and the schedule start afresh.
    `epoch_samples` fixes how many samples an epoch holds over all ranks (needed under DDP so ranks step
    together; None reads the shards once per epoch on a single process).
    `crop_on_device`: the loader workers only decode, into canvases `canvas_size` px square (None: 256 or the
    model's input size if larger), and the GPU crops, resizes and flips (`mug.data.loading.device_crop`): a worker feeds
    a quarter more images per second at 224 px. For GPUs short of CPU cores; on a CPU it costs more than it saves.
    `crop_scale` (None: the recipe's) and `flip`: the training augmentation, narrowed where it would contradict
    the captions (the synthetic corpus says left and right, and counts objects a small crop cuts out).
    """

    data: list[str] = field(default_factory=list)
    out: str = "runs/pretrain"
    objective: str = "mug"
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    init_from: str | None = None
    steps: int = 1000
    batch_size: int = 64
    accum_steps: int = 1
    base_lr: float = 1.5e-4
    min_lr: float = 0.0
    warmup_steps: int | None = None
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float = 1.0  # MAE's pre-training does not clip (0 here); kept at 1.0, see the README's recipe
    precision: str = "fp32"
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    num_workers: int = 2
    shuffle_buffer: int = 1000
    epoch_samples: int | None = None
    crop_on_device: bool = False
    canvas_size: int | None = None
    crop_scale: tuple[float, float] | None = None
    flip: bool = True
    ckpt_every: int = 500
    keep_last: int = 2
    log_every: int = 10
    sample_every: int = 0
    wandb: str = "offline"
    wandb_project: str = "mug"
    run_name: str | None = None

    def validate(self) -> TrainConfig:
        check(self)  # types first (mug.fields' rules), so the range checks below compare numbers
        if not self.data:
            raise ConfigError("data: give at least one shard URL, folder or brace pattern (--data)")
        for name in ("steps", "batch_size", "accum_steps", "ckpt_every", "keep_last", "log_every"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("num_workers", "sample_every", "shuffle_buffer"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")
        if self.base_lr <= 0 or not 0 <= self.min_lr <= self.base_lr:
            raise ConfigError(f"need base_lr > 0 and 0 <= min_lr <= base_lr, got {self.base_lr} and {self.min_lr}")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"betas must both be in [0, 1), got {list(self.betas)}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be in [0, 2**63), got {self.seed}")
        if self.clip_grad < 0 or self.weight_decay < 0:
            raise ConfigError("clip_grad and weight_decay must be >= 0 (clip_grad 0 turns clipping off)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.wandb not in WANDB_MODES:
            raise ConfigError(f"wandb must be one of {', '.join(WANDB_MODES)}, got {self.wandb!r}")
        for name in ("epoch_samples", "canvas_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        check_crop_scale(self.crop_scale, "crop_scale")
        if self.accum_steps > 1 and self.objective in CONTRASTIVE:
            raise ConfigError(f"accum_steps={self.accum_steps} with objective {self.objective}: each micro-batch would "
                              "contrast against fewer negatives than the global batch the learning rate assumes; "
                              "raise batch_size or the number of processes instead")  # fmt: skip
        if self.crop_on_device and self.objective == "simclr":
            raise ConfigError("crop_on_device: SimCLR's colour jitter, grayscale and blur run in the loader workers; "
                              "set crop_on_device to false")  # fmt: skip
        if self.init_from is not None and not (Path(self.init_from) / "config.json").is_file():
            raise ConfigError(f"init_from: {self.init_from} is not a checkpoint directory (no config.json)")
        self.model_config()  # an unknown preset or a bad model override is named now, not after data loading
        return self

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else self.steps // 20

    def model_config(self, vocab_size: int | None = None, pad_id: int | None = None) -> ModelConfig:
        """The preset with the `model` overrides and the objective; the tokenizer's vocabulary when given."""
        overrides = _model_sections(self.model)
        named = overrides.setdefault("objective", {}).get("name", self.objective)
        if named != self.objective:
            raise ConfigError(f"model.objective.name ({named!r}) differs from objective ({self.objective!r}); "
                              "choose the objective with objective (--objective) alone")  # fmt: skip
        overrides["objective"]["name"] = self.objective
        if vocab_size is not None:
            overrides.setdefault("text", {}).update(vocab_size=vocab_size, pad_id=pad_id)
        try:
            return build_config(self.preset, overrides=overrides)
        except ConfigError as err:  # the model's fields live under `model` here: name them as the user sets them
            raise ConfigError(_MODEL_FIELD.sub(r"model.\1.", str(err))) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML/JSON `file`, then `overrides` (e.g. from the command line); the later wins."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(read_config_file(file))
    for key, value in (overrides or {}).items():
        if key == "model" and isinstance(value, dict):
            merged = _model_sections(values.get("model", {}))
            for section, fields in _model_sections(value).items():
                merged.setdefault(section, {}).update(fields)
            value = merged
        values[key] = value
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(map(str, set(values) - set(known)))
    if unknown:
        raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}; known: {', '.join(known)}")
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    return TrainConfig(**values).validate()


def _model_sections(model: Any) -> dict[str, dict[str, Any]]:
    """A copy of the `model` setting, which maps sections (encoder, text, ...) to their fields."""
    if not isinstance(model, dict):
        raise ConfigError(f"model must map sections to fields (e.g. model.encoder.depth=4), got {model!r}")
    for section, fields in model.items():
        if not isinstance(fields, dict):
            raise ConfigError(f"model.{section} must map fields to values (e.g. model.{section}.X=...), got {fields!r}")
    return {section: dict(fields) for section, fields in model.items()}
