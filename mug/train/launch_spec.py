"""Where and how wide a launched training runs (`LaunchSpec`), checked before anything starts; shared by the
torchx launcher (`mug.train.launch`) and the Kubeflow Trainer one (`mug.train.trainjob`)."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from mug.errors import ConfigError
from mug.fields import check

SCHEDULERS = ("local_cwd", "kubernetes", "trainjob", "trainjob-local")
CLUSTER = ("kubernetes", "trainjob")  # the schedulers that submit to a cluster
_SECRET_LIKE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
_QUANTITY = re.compile(r"^\d+(\.\d+)?([KMGTPE]i?)?$")
_SECRET_KEY = re.compile(r"^(?P<secret>[a-z0-9][a-z0-9.-]*):(?P<key>[-._a-zA-Z0-9]+)=(?P<var>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass
class LaunchSpec:
    """Where and how wide to run. Cluster-only fields (image, namespace, shm_size, env_secrets, mounts, queue for
    Volcano, runtime for Trainer) are ignored by `local_cwd` and `trainjob-local`, which run in this
    environment."""

    scheduler: str = "local_cwd"
    nproc_per_node: int = 1
    nodes: int = 1
    image: str | None = None
    gpus_per_node: int = 0
    cpus_per_node: int = 8  # fits most nodes; raise it for GPU nodes so data loading keeps up
    memory_gb: int = 32  # GB (10^9 bytes); the /dev/shm tmpfs counts against it
    shm_size: str | None = None  # a Kubernetes quantity ("16Gi"); None: no limit below memory_gb
    queue: str = "default"  # the Volcano queue (Volcano creates "default")
    namespace: str = "default"
    env: dict[str, str] = field(default_factory=dict)
    # Kubernetes Secrets whose keys become env vars; with trainjob one key each, as SECRET:KEY=VAR
    env_secrets: list[str] = field(default_factory=list)
    # torchx mount specs, e.g. "type=volume,src=runs-pvc,dst=/mnt/runs": a PersistentVolumeClaim every pod
    # writes its checkpoints to (kubernetes)
    mounts: list[str] = field(default_factory=list)
    name: str = "mug-pretrain"
    max_retries: int = 0
    runtime: str = "torch-distributed"  # the Trainer (Cluster)TrainingRuntime a TrainJob runs on

    def validate(self) -> None:
        check(self)
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        for name in ("nproc_per_node", "nodes", "cpus_per_node", "memory_gb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("gpus_per_node", "max_retries"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.gpus_per_node and self.nproc_per_node > self.gpus_per_node:
            raise ConfigError(
                f"nproc_per_node must be at most gpus_per_node ({self.gpus_per_node}): each process gets one GPU, "
                f"got {self.nproc_per_node}"
            )
        for key in self.env:
            if _SECRET_LIKE.search(key):
                raise ConfigError(
                    f"env.{key} looks like a secret: pass it through env_secrets (a Kubernetes Secret) "
                    "or export it where you launch locally"
                )
        if self.scheduler not in CLUSTER:
            if self.nodes != 1:
                raise ConfigError(f"nodes must be 1 with {self.scheduler}, which runs on this machine only (use "
                                  f"nproc_per_node), got {self.nodes}")  # fmt: skip
            if self.env_secrets:
                raise ConfigError(f"env_secrets must be empty with {self.scheduler}: Kubernetes Secrets apply to "
                                  "a cluster only")  # fmt: skip
            return
        if not self.image:
            raise ConfigError(f"image must be set for the {self.scheduler} scheduler: the image every pod runs")
        if self.shm_size is not None and not _QUANTITY.match(self.shm_size):
            raise ConfigError(f"shm_size must be a Kubernetes quantity such as 16Gi, got {self.shm_size!r}")
        if self.scheduler == "trainjob":
            claims(self)
            for entry in self.env_secrets:
                secret_env(entry)


def default_env(spec: LaunchSpec) -> dict[str, str]:
    """OMP_NUM_THREADS splits the node's CPUs between its processes: torchrun would otherwise set 1 (and warn),
    which starves CPU training, while torch's default (all cores per process) oversubscribes. Locally an
    exported OMP_NUM_THREADS wins, and the interpreter's bin dir goes first on PATH: local_cwd runs `torchrun`
    from PATH (after the current directory), which must be this environment's even from an unactivated venv."""
    if spec.scheduler in CLUSTER:
        return {"OMP_NUM_THREADS": str(max(1, spec.cpus_per_node // spec.nproc_per_node))}
    env = {"PATH": os.path.dirname(sys.executable)}
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // spec.nproc_per_node))
    return env


def secret_env(entry: str) -> dict[str, Any]:
    """`SECRET:KEY=VAR` -> the env var VAR from key KEY of Secret SECRET, optional (no Secret: W&B stays
    offline). A TrainJob's trainer takes env vars one by one: it has no envFrom."""
    match = _SECRET_KEY.match(entry)
    if not match:
        raise ConfigError(
            "env_secrets entries must be SECRET:KEY=VAR with trainjob (e.g. wandb:api-key=WANDB_API_KEY: a "
            f"TrainJob's trainer takes Secret keys one by one), got {entry!r}"
        )
    ref = {"name": match["secret"], "key": match["key"], "optional": True}
    return {"name": match["var"], "valueFrom": {"secretKeyRef": ref}}


def claims(spec: LaunchSpec) -> list[tuple[str, str]]:
    """(claim, mount path) of each `type=volume,src=CLAIM,dst=PATH` mount (the torchx mount syntax)."""
    found = []
    for mount in spec.mounts:
        parts = dict(part.split("=", 1) for part in mount.split(",") if "=" in part)
        if parts.get("type") != "volume" or not parts.get("src") or not parts.get("dst", "").startswith("/"):
            raise ConfigError(f"mounts entries must be type=volume,src=CLAIM,dst=/PATH with trainjob, got {mount!r}")
        found.append((parts["src"], parts["dst"]))
    return found
