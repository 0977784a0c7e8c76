"""Shared fixtures: a micro model config (fast on 2 CPU cores) and a tokenizer trained on synthetic captions."""

import os

import pytest
import torch

from mug.config import build_config
from mug.data.synthetic.synth import sample_pairs
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


def git(*args: str, cwd) -> str:
    import subprocess

    identity = ("-c", "user.name=t", "-c", "user.email=t@t")
    return subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def dvc_repo(root, remote):
    """A git repository with DVC initialised and `remote` (a folder) as its default remote."""
    os.environ["DVC_NO_ANALYTICS"] = "1"
    from dvc.repo import Repo

    root.mkdir(parents=True)
    git("init", "-q", cwd=root)
    with Repo.init(str(root)).config.edit() as config:
        config["remote"]["local"] = {"url": str(remote)}
        config["core"]["remote"] = "local"
    return root


def commit_data(root, folder: str, tag: str) -> str:
    """`dvc add` `folder`, push it, commit and tag the revision; the repository's own cache and copy are then
    deleted, so the data can only come from the remote, as in a fresh clone. The commit."""
    import shutil

    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.add(str(root / folder))
        repo.push()
    git("add", "-A", cwd=root)
    git("commit", "-qm", f"data {tag}", cwd=root)
    git("tag", tag, cwd=root)
    shutil.rmtree(root / ".dvc" / "cache")
    return git("rev-parse", "HEAD", cwd=root)


def add_shards(train, seed: int, samples: int = 128, shard_size: int = 128) -> None:
    """Append freshly synthesised train shards (numbered after the last one in `train`), as new data arrives."""
    import shutil
    import tempfile
    from pathlib import Path

    from mug.data.synthetic.corpus import synthesize_corpus

    first = len(list(Path(train).glob("*.tar")))
    with tempfile.TemporaryDirectory() as tmp:
        synthesize_corpus(tmp, samples, 0, shard_size=shard_size, image_size=32, seed=seed, progress=False)
        for path in sorted((Path(tmp) / "train").iterdir()):  # 00000.tar, 00000.parquet, 00000_stats.json
            shutil.copy(path, Path(train) / f"{first + int(path.name[:5]):05d}{path.name[5:]}")


@pytest.fixture
def unreachable_cluster(tmp_path, monkeypatch):
    """A kubeconfig whose API server is 127.0.0.1:1, where nothing listens: what a submission meets without a
    cluster. The kubernetes client reads $KUBECONFIG once, at import, so its default location is what moves."""
    import yaml

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "none", "cluster": {"server": "http://127.0.0.1:1"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {}}],
        "current-context": "none",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod: use the kubeconfig
