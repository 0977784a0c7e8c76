"""Cluster settings, applied through kfp-kubernetes at compile time: they only warn in a local run. Defaults
suit NVIDIA's GPU operator; override them with environment variables when compiling for another cluster.
Nothing secret is written: the W&B key reaches the pod from a Kubernetes Secret, by name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kfp import kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineChannel


def _pairs(text: str) -> dict[str, str]:
    """'k=v,k2=v2' -> {"k": "v", "k2": "v2"}."""
    pairs = dict(item.split("=", 1) for item in text.split(",") if item.strip())
    return {key.strip(): value.strip() for key, value in pairs.items()}


@dataclass(frozen=True)
class Platform:
    accelerator_type: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_taint: str = "nvidia.com/gpu"  # tolerated (Exists, NoSchedule) so GPU steps may run on tainted GPU nodes
    shm_size: str = "16Gi"  # DataLoader workers and NCCL share memory through /dev/shm (64 MiB by default)
    wandb_secret: str = "wandb"  # a Secret in the run's namespace ...
    wandb_secret_key: str = "api-key"  # ... whose key becomes WANDB_API_KEY
    shared_pvc: str = ""  # a ReadWriteMany claim a pre-training task shares with its multi-node job ("": none)
    multi_node: str = "trainjob"  # how nodes > 1 run: a Kubeflow Trainer TrainJob, or "volcano" (a Volcano job)
    trainer_runtime: str = "torch-distributed"  # the TrainJob's (Cluster)TrainingRuntime
    volcano_queue: str = "default"

    @classmethod
    def from_env(cls) -> Platform:
        """$MUG_ACCELERATOR_TYPE, $MUG_NODE_SELECTOR ("k=v,..."), $MUG_GPU_TAINT, $MUG_SHM_SIZE, $MUG_WANDB_SECRET,
        $MUG_SHARED_PVC, $MUG_MULTI_NODE (trainjob or volcano), $MUG_TRAINER_RUNTIME, $MUG_VOLCANO_QUEUE."""
        default = cls()
        env = os.environ.get
        selector = env("MUG_NODE_SELECTOR")
        return cls(
            accelerator_type=env("MUG_ACCELERATOR_TYPE", default.accelerator_type),
            node_selector=_pairs(selector) if selector is not None else default.node_selector,
            gpu_taint=env("MUG_GPU_TAINT", default.gpu_taint),
            shm_size=env("MUG_SHM_SIZE", default.shm_size),
            wandb_secret=env("MUG_WANDB_SECRET", default.wandb_secret),
            shared_pvc=env("MUG_SHARED_PVC", default.shared_pvc),
            multi_node=env("MUG_MULTI_NODE", default.multi_node),
            trainer_runtime=env("MUG_TRAINER_RUNTIME", default.trainer_runtime),
            volcano_queue=env("MUG_VOLCANO_QUEUE", default.volcano_queue),
        )


def step(task: PipelineTask) -> PipelineTask:
    """Every task: no caching. KFP's cache key hashes parameters, not data contents, so a cached step could
    reuse results computed from older shards at the same path."""
    return task.set_caching_options(False)


def on_gpus(task: PipelineTask, gpus: int | PipelineChannel, platform: Platform | None = None) -> PipelineTask:
    """A training task on `gpus` GPUs of a GPU node, with a memory-backed /dev/shm and the W&B key (optional:
    without the Secret, W&B stays offline)."""
    platform = platform or Platform.from_env()
    task.set_accelerator_type(platform.accelerator_type).set_accelerator_limit(gpus)
    kubernetes.empty_dir_mount(task, "dshm", mount_path="/dev/shm", medium="Memory", size_limit=platform.shm_size)
    for key, value in platform.node_selector.items():
        kubernetes.add_node_selector(task, key, value)
    if platform.gpu_taint:
        kubernetes.add_toleration(task, key=platform.gpu_taint, operator="Exists", effect="NoSchedule")
    kubernetes.use_secret_as_env(
        task, platform.wandb_secret, {platform.wandb_secret_key: "WANDB_API_KEY"}, optional=True
    )
    return task


def launches_jobs(task: PipelineTask, platform: Platform | None = None) -> PipelineTask:
    """The pre-training task, which submits a multi-node job when `nodes` > 1 (`mug.steps.cluster_spec`): a
    Kubeflow Trainer TrainJob or a Volcano job. It passes on its own image, the launcher and its settings, the
    /dev/shm size and the W&B Secret, and the claim it shares with the job's pods (mounted at
    mug.steps.SHARED_DIR). Its service account needs the right to create TrainJobs (or Volcano jobs) in the
    namespace."""
    from components.base_image import BASE_IMAGE
    from mug.steps import SHARED_DIR, multi_node_scheduler

    platform = platform or Platform.from_env()
    multi_node_scheduler(platform.multi_node)  # a bad value fails the compile, not the run
    settings = {
        "MUG_IMAGE": BASE_IMAGE,
        "MUG_MULTI_NODE": platform.multi_node,
        "MUG_TRAINER_RUNTIME": platform.trainer_runtime,
        "MUG_VOLCANO_QUEUE": platform.volcano_queue,
        "MUG_SHM_SIZE": platform.shm_size,
        "MUG_WANDB_SECRET": platform.wandb_secret,
        "MUG_WANDB_SECRET_KEY": platform.wandb_secret_key,
    }
    for name, value in settings.items():
        task.set_env_variable(name, value)
    if platform.shared_pvc:
        kubernetes.mount_pvc(task, pvc_name=platform.shared_pvc, mount_path=SHARED_DIR)
        task.set_env_variable("MUG_SHARED_PVC", platform.shared_pvc).set_env_variable("MUG_SHARED_DIR", SHARED_DIR)
    return task
