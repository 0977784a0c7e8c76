"""Shared fixtures: a micro model config (fast on 2 CPU cores) and a tokenizer trained on synthetic captions."""

import pytest
import torch

from mug.config import build_config
from mug.data.synth import sample_pairs
from mug.tokenizer import CaptionTokenizer

MICRO = {
    "encoder": {"img_size": 32, "patch_size": 8, "width": 64, "depth": 2, "heads": 2},
    "pixel_decoder": {"width": 32, "depth": 1, "heads": 2},
    "text": {"context_length": 16, "width": 32, "depth": 2, "heads": 2, "vocab_size": 64},
    "objective": {"proj_dim": 32},
}


def micro_config(name: str = "mug", **sections):
    """The micro model for objective `name`; keyword sections (encoder={...}) override fields."""
    overrides = {key: dict(value) for key, value in MICRO.items()}
    overrides["objective"]["name"] = name
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return build_config("tiny", overrides=overrides)


def random_batch(cfg, n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    size = cfg.encoder.img_size
    tokens = torch.randint(4, cfg.text.vocab_size, (n, cfg.text.context_length), generator=gen)
    tokens[:, 0] = 2
    tokens[:, -3:] = cfg.text.pad_id  # some padding, as real batches have
    return {
        "image": torch.randn(n, 3, size, size, generator=gen),
        "image2": torch.randn(n, 3, size, size, generator=gen),
        "tokens": tokens,
    }


@pytest.fixture(scope="session")
def pairs():
    return sample_pairs(8, size=32, seed=0)


@pytest.fixture(scope="session")
def tokenizer(pairs):
    return CaptionTokenizer.train([c for _, c in pairs], vocab_size=128, min_frequency=1)


@pytest.fixture(scope="session", autouse=True)
def floor_cache(tmp_path_factory):
    """Random-init floors are cached per test session (and shared with the subprocesses tests start), not in ~."""
    import os

    os.environ["MUG_CACHE_DIR"] = str(tmp_path_factory.mktemp("mug-cache"))
    return os.environ["MUG_CACHE_DIR"]


def limit_file_size(limit: int) -> None:
    """From now on this process's files cannot grow past `limit` bytes (RLIMIT_FSIZE): the kernel refuses the write
    with EFBIG, as a full disk refuses it with ENOSPC. SIGXFSZ is ignored, so the write fails instead of the process
    being killed. For child processes only (a preexec_fn, or the target of a spawned process)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
