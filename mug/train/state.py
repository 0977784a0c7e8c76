"""Training checkpoints: a model checkpoint directory (`mug.checkpoint`) plus what resumes the run exactly.

`ROOT/step-00000100/` holds model.safetensors, config.json, tokenizer.json (any `mug evaluate` reads it), plus
train_state.pt (optimizer, grad scaler, RNG states, step, data position: plain tensors and numbers, loaded with
`weights_only=True`) and history.jsonl (the logged losses so far). Each is written under a temporary name and
renamed into place, and older ones are removed only after the new one is complete, so a crash or a full disk
leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import pickle
import re
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mug.checkpoint import CheckpointError, existing_file, required_file, save_checkpoint
from mug.history import HISTORY, write_history
from mug.models import Objective
from mug.tokenizer import CaptionTokenizer

STATE = "train_state.pt"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


@dataclass
class DataPosition:
    """Where the data stream stands: the loader epoch, and how many of its micro-batches were consumed."""

    epoch: int = 0
    batches: int = 0


@dataclass
class TrainState:
    step: int
    position: DataPosition
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    rng: list[dict[str, Any]]  # one per rank: each draws its own masks


def rng_state() -> dict[str, Any]:
    """Every generator the step draws from: torch's CPU generator and, if present, the CUDA ones."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(
    root: Path,
    model: Objective,
    tokenizer: CaptionTokenizer | None,
    state: TrainState,
    history: list[dict[str, float]],
    metadata: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write ROOT/step-NNNNNNNN atomically, then delete all but the newest `keep_last` checkpoints."""

    def write_state(directory: Path) -> None:
        payload = asdict(state)
        torch.save(payload, directory / STATE)
        write_history(directory / HISTORY, history)

    path = save_checkpoint(root / f"step-{state.step:08d}", model, tokenizer, metadata, extra=write_state)
    for old in checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def checkpoints(root: Path) -> list[Path]:
    """Complete training checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / STATE).exists()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: Path) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def load_training_state(directory: Path) -> TrainState:
    """The state saved next to the weights; a missing or unreadable file is a CheckpointError naming it."""
    if not existing_file(directory / STATE):
        raise CheckpointError(f"{directory} is not a training checkpoint: it has no {STATE}")
    path = required_file(directory, STATE)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses a file
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} is not a torch file of tensors and numbers (nothing in it was unpickled)"
        ) from err
    except Exception as err:  # a damaged zip, a file that ends early, ...: all the file's fault, none a bug of ours
        first = str(err).strip().splitlines()[0] if str(err).strip() else "it ends early"
        raise CheckpointError(f"{path} is damaged or truncated ({type(err).__name__}: {first})") from err
    try:
        return TrainState(
            step=int(data["step"]),
            position=DataPosition(**data["position"]),
            optimizer=dict(data["optimizer"]),
            scaler=data["scaler"],
            rng=list(data["rng"]),
        )
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is not a mug training state ({type(err).__name__}: {err})") from err
