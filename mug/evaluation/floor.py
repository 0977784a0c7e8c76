"""The random-init floor: the evaluated architecture with freshly initialised weights (a fixed seed), read over the
same eval images. Whatever a probe reads off these features, pre-training did not add; the transfer score counts
only what lies above them.

The floor's features depend only on the model config and the eval data, so they are computed once and cached
(`$MUG_CACHE_DIR/floors`, default `~/.cache/mug/floors`) under a hash of both.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mug.cache import cache_dir
from mug.config import ModelConfig
from mug.models import Objective, build_model

FLOOR_SEED = 0
_FORMAT = 2  # bump when what the cache holds, how features are computed, or the random init changes (2: MAE's
# position-table order)
Features = dict[str, np.ndarray]  # "keys" [N] and one array per pool, for the eval set and for the digits


def random_init(cfg: ModelConfig, device: torch.device) -> Objective:
    """The architecture of `cfg` as the floor sees it: weights drawn from FLOOR_SEED, not from the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FLOOR_SEED)
        model = build_model(cfg)
    return model.to(device).eval()


def _data_identity(shards: list[str]) -> list:
    """Local shards by path, size and modification time (a regenerated shard misses the cache); URLs as given."""
    identity = []
    for shard in shards:
        path = Path(shard.removeprefix("file://"))
        if path.is_file():
            stat = path.stat()
            identity.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
        else:
            identity.append(shard)
    return identity


def cache_key(cfg: ModelConfig, shards: list[str], max_samples: int | None, seed: int) -> str:
    what = {"model": cfg.to_dict(), "data": _data_identity(shards), "max": max_samples, "seed": seed, "v": _FORMAT}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def _save(path: Path, eval_set: Features, digits: Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"eval/{k}": v for k, v in eval_set.items()} | {f"digits/{k}": v for k, v in digits.items()}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, path)  # a crash never leaves a half-written cache entry


def _load(path: Path) -> tuple[Features, Features] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            parts = {
                part: {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(part + "/")}
                for part in ("eval", "digits")
            }
    except (OSError, ValueError, KeyError):
        return None  # unreadable: computed again and overwritten
    return parts["eval"], parts["digits"]


def _aligned(features: Features, keys: np.ndarray) -> Features | None:
    """`features` with their rows in the order of `keys`, or None when some key is not among them."""
    row = {key: i for i, key in enumerate(features["keys"].tolist())}
    if any(key not in row for key in keys.tolist()):
        return None
    order = np.array([row[key] for key in keys.tolist()], dtype=int)
    return {name: values[order] for name, values in features.items()}


def floor_features(
    cfg: ModelConfig,
    shards: list[str],
    max_samples: int | None,
    seed: int,
    device: torch.device,
    compute: Callable[[Objective], tuple[Features, Features]],
    keys: np.ndarray,
) -> tuple[Features, Features, bool]:
    """(eval-set features in the order of `keys`, digit features, whether they came from the cache) of the
    random-init model. `compute(model)` reads the eval set (with its "keys") and the digits with a model."""
    path = cache_dir("floors") / f"{cache_key(cfg, shards, max_samples, seed)}.npz"
    cached = _load(path) if path.is_file() else None
    if cached is not None and (eval_set := _aligned(cached[0], keys)) is not None:
        return eval_set, cached[1], True
    eval_set, digits = compute(random_init(cfg, device))
    try:
        _save(path, eval_set, digits)
    except OSError as err:
        warnings.warn(f"the random-init floor cannot be cached in {path.parent} ({err})", stacklevel=2)
    aligned = _aligned(eval_set, keys)
    if aligned is None:
        raise RuntimeError("the eval set read differently for the random-init model than for the evaluated one")
    return aligned, digits, False
