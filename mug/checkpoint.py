"""Model checkpoints as a directory: safetensors weights, JSON config and the tokenizer. Nothing is pickled.

A directory is written under a temporary name and renamed into place, so a crash never leaves a half-written
checkpoint where a good one was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from mug.config import ConfigError, ModelConfig
from mug.errors import UserError
from mug.models import Objective, build_model
from mug.tokenizer import CaptionTokenizer

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"


class CheckpointError(UserError):
    """A checkpoint directory that is missing, incomplete or does not match its config."""


def save_checkpoint(
    directory: str | Path,
    model: Objective,
    tokenizer: CaptionTokenizer | None = None,
    metadata: dict | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write weights, config (+ metadata) and tokenizer to `directory`, replacing it atomically; `extra` writes
    further files (a trainer's state) into the directory before it is moved into place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_model(model, str(tmp / WEIGHTS))  # handles the tied caption head/embedding
        (tmp / CONFIG).write_text(json.dumps({"model": model.cfg.to_dict(), "metadata": metadata or {}}, indent=2))
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER)
        if extra is not None:
            extra(tmp)
        old = directory.with_name(f".{directory.name}.old")
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def existing_file(path: Path) -> bool:
    """Whether the file `path` is there; a directory (or anything but a file) in its place is a CheckpointError."""
    if path.is_file():
        return True
    if path.exists():
        raise CheckpointError(f"{path} is {'a directory' if path.is_dir() else 'not a regular file'}, not a file")
    return False


def required_file(directory: Path, name: str) -> Path:
    """`directory`/`name`, checked to be a file with something in it."""
    path = directory / name
    if not existing_file(path):
        raise CheckpointError(f"checkpoint {directory} has no {name}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (a copy or a write that did not finish?)")
    return path


def read_config(directory: str | Path) -> tuple[ModelConfig, dict]:
    path = required_file(Path(directory), CONFIG)
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not JSON: truncated or of another format ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path} is not a mug checkpoint config: it holds no 'model' mapping")
    if not isinstance(data.get("metadata", {}), dict):
        raise CheckpointError(f"{path}: 'metadata' must be a mapping, got {type(data['metadata']).__name__}")
    try:
        return ModelConfig.from_dict(data["model"]), data.get("metadata", {})
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {directory}: {CONFIG} is not a valid model config ({err})") from err


def load_checkpoint(
    directory: str | Path, device: str | torch.device = "cpu", need_tokenizer: bool = False
) -> tuple[Objective, CaptionTokenizer | None, dict]:
    """(model in eval mode, tokenizer or None, metadata) from a directory written by `save_checkpoint`."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file, not a directory" if directory.exists() else "does not exist"
        raise CheckpointError(f"checkpoint directory {directory} {what}")
    weights = required_file(directory, WEIGHTS)
    has_tokenizer = existing_file(directory / TOKENIZER)
    if need_tokenizer and not has_tokenizer:
        raise CheckpointError(f"checkpoint {directory} has no {TOKENIZER}")
    cfg, metadata = read_config(directory)
    model = build_model(cfg)
    try:
        load_model(model, str(weights), strict=True, device=str(device))
    except SafetensorError as err:
        raise CheckpointError(f"{weights} is not a safetensors file: truncated or of another format ({err})") from err
    except (RuntimeError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {directory}: weights do not match {CONFIG} ({first})") from err
    tokenizer = CaptionTokenizer.from_file(directory / TOKENIZER) if has_tokenizer else None
    if tokenizer is not None and tokenizer.vocab_size != cfg.text.vocab_size:
        raise CheckpointError(
            f"checkpoint {directory}: tokenizer has {tokenizer.vocab_size} tokens, config says {cfg.text.vocab_size}"
        )
    return model.to(device).eval(), tokenizer, metadata


def check_same_model(checkpoint: Path, model_cfg: ModelConfig) -> dict:
    """The checkpoint's metadata, after checking that its model is `model_cfg` (the first difference is named)."""
    saved_model, metadata = read_config(checkpoint)
    if saved_model.to_dict() != model_cfg.to_dict():
        diff = _first_difference(saved_model.to_dict(), model_cfg.to_dict())
        raise CheckpointError(f"cannot start from {checkpoint}: its model differs from this run's ({diff})")
    return metadata


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            found = _first_difference(a[key], b[key], f"{prefix}{key}.")
            if found:
                return found
        elif a.get(key) != b.get(key):
            return f"{prefix}{key}: checkpoint {a.get(key)!r}, run {b.get(key)!r}"
    return ""
