"""Launch `mug pretrain` as a Kubeflow Trainer TrainJob through the Kubeflow SDK (`kubeflow.trainer`): on a
cluster (`trainjob`: a ClusterTrainingRuntime such as `torch-distributed` starts the image on every node with
torchrun's PET_* settings) or as local processes (`trainjob-local`: the SDK's local-process backend). Both run
`torchrun -m mug.cli pretrain ...` with the same arguments as the torchx launcher. The SDK is imported inside the
functions, like torchx in `mug.train.launch`."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mug.errors import UserError
from mug.train.launch_spec import LaunchSpec, claims, default_env, secret_env

if TYPE_CHECKING:
    from kubeflow.trainer import TrainerClient
    from kubeflow.trainer.backends.base import RuntimeBackend


NODE = "node"  # the trainer's replicated job and container in Trainer's runtimes (kubeflow.trainer.constants.NODE)
HANDLE = "trainjob://"
SHM_VOLUME = "dshm"
MAX_FAILED_POLLS = 10
_DONE = ("Complete", "Failed")  # kubeflow.trainer.constants TRAINJOB_COMPLETE, TRAINJOB_FAILED


def command(worker_args: list[str], spec: LaunchSpec, module: str = "mug.cli") -> list[str]:
    """torchrun takes nodes, rank and rendezvous from the PET_* variables the runtime sets; the processes per
    node are explicit, as the runtime's `auto` would count GPUs only."""
    return ["torchrun", f"--nproc-per-node={spec.nproc_per_node}", "-m", module, *worker_args]


def _request(worker_args: list[str], spec: LaunchSpec, module: str) -> tuple[Any, list]:
    """The SDK's trainer and options: image, nodes, resources and command; /dev/shm in memory and the claims
    mounted through a runtime patch of the `node` container."""
    from kubeflow.trainer import CustomTrainerContainer
    from kubeflow.trainer.options import (
        ContainerPatch,
        JobSetSpecPatch,
        JobSetTemplatePatch,
        JobSpecPatch,
        JobTemplatePatch,
        Labels,
        Name,
        PodSpecPatch,
        PodTemplatePatch,
        ReplicatedJobPatch,
        RuntimePatch,
        TrainerCommand,
        TrainingRuntimeSpecPatch,
    )

    resources = {"cpu": str(spec.cpus_per_node), "memory": f"{spec.memory_gb}G"}  # strings: "8", not 8.0
    if spec.gpus_per_node:
        resources["gpu"] = str(spec.gpus_per_node)
    trainer = CustomTrainerContainer(
        image=spec.image,
        num_nodes=spec.nodes,
        resources_per_node=resources,
        env={**default_env(spec), **spec.env},
    )
    shm: dict[str, Any] = {"medium": "Memory"} | ({"sizeLimit": spec.shm_size} if spec.shm_size else {})
    volumes = [{"name": SHM_VOLUME, "emptyDir": shm}]
    mounts = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    for i, (claim, path) in enumerate(claims(spec)):
        volumes.append({"name": f"claim-{i}", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": f"claim-{i}", "mountPath": path})
    pod = PodSpecPatch(volumes=volumes, containers=[ContainerPatch(name=NODE, volume_mounts=mounts)])
    node = ReplicatedJobPatch(
        name=NODE, template=JobTemplatePatch(spec=JobSpecPatch(template=PodTemplatePatch(spec=pod)))
    )
    patch = RuntimePatch(
        training_runtime_spec=TrainingRuntimeSpecPatch(
            template=JobSetTemplatePatch(spec=JobSetSpecPatch(replicated_jobs=[node]))
        )
    )
    options = [Name(name=job_name(spec)), Labels(labels={"app.kubernetes.io/name": "mug"}), TrainerCommand(
        command=command(worker_args, spec, module)), patch]  # fmt: skip
    return trainer, options


def job_name(spec: LaunchSpec) -> str:
    """The name with a random suffix, as torchx does: a re-run must not collide with the last job's name."""
    return f"{spec.name}-{uuid.uuid4().hex[:6]}"


def recorder(backend_class: type, namespace: str):
    """An SDK backend that needs no cluster: it builds its object (TrainJob, Katib Experiment) with the SDK's own
    code and keeps it in `.created` instead of creating it; how `render` sees exactly what would be sent."""

    class Recorder(backend_class):
        def __init__(self) -> None:  # no kubeconfig, no API client
            self.namespace, self.custom_api, self.created = namespace, self, None

        def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            self.created = body

    return Recorder()


def sdk_backend(namespace: str, record: bool = False):
    """The SDK's Trainer backend for Kubernetes in `namespace` (from the kubeconfig, or in-cluster); with
    `record`, its `recorder`."""
    from kubeflow.trainer.backends.kubernetes.backend import KubernetesBackend

    if record:
        return recorder(KubernetesBackend, namespace)
    from kubeflow.common.types import KubernetesBackendConfig

    return KubernetesBackend(KubernetesBackendConfig(namespace=namespace))


def runtime(name: str, image: str | None = None):
    """A torch runtime as the SDK describes one it read from the cluster (rendering does not look it up): its
    command runs a CustomTrainer's function under torchrun."""
    from kubeflow.trainer import Runtime, RuntimeKind, RuntimeTrainer, TrainerType
    from kubeflow.trainer.constants import constants

    trainer = RuntimeTrainer(trainer_type=TrainerType.CUSTOM_TRAINER, framework="torch", image=image or "")
    trainer.set_command(constants.TORCH_COMMAND)
    return Runtime(name=name, trainer=trainer, kind=RuntimeKind.CLUSTER_TRAINING_RUNTIME)


def render(worker_args: list[str], spec: LaunchSpec, module: str = "mug.cli") -> dict[str, Any]:
    """The TrainJob `submit` creates, as a dict (no cluster needed). Secret keys are added to the trainer's env
    here: the SDK's trainer env holds plain values only."""
    spec.validate()
    backend = sdk_backend(spec.namespace, record=True)
    trainer, options = _request(worker_args, spec, module)
    backend.train(runtime=runtime(spec.runtime, spec.image), trainer=trainer, options=options)
    job = backend.created
    job["metadata"]["namespace"] = spec.namespace
    job["spec"]["trainer"].setdefault("env", []).extend(secret_env(entry) for entry in spec.env_secrets)
    return job


def submit(worker_args: list[str], spec: LaunchSpec, module: str = "mug.cli") -> str:
    """Create the TrainJob (after checking its runtime exists) and return its handle, trainjob://NAMESPACE/NAME."""
    from kubeflow.trainer.constants import constants

    job = render(worker_args, spec, module)
    try:
        backend = sdk_backend(spec.namespace)
        backend.get_runtime(spec.runtime)
        backend.custom_api.create_namespaced_custom_object(
            constants.GROUP, constants.VERSION, spec.namespace, constants.TRAINJOB_PLURAL, job
        )
    except Exception as err:  # the SDK wraps the API's errors in RuntimeError/TimeoutError: say which, in a line
        cause = err.__cause__ or err
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise UserError(f"trainjob: cannot submit {spec.name} to namespace {spec.namespace}: {err}: {reason}") from err
    return f"{HANDLE}{spec.namespace}/{job['metadata']['name']}"


def wait_for(handle: str, poll_s: float = 30.0, timeout_s: float = 7 * 24 * 3600) -> None:
    """Block until the TrainJob behind `handle` ends, printing each change of its status; if it failed, raise
    with the job's reason (its events) and the end of node 0's log."""
    namespace, name = handle.removeprefix(HANDLE).split("/", 1)
    backend = sdk_backend(namespace)
    job = _follow(backend, name, poll_s, timeout_s, logs=False)
    if job.status != "Complete":
        events = "; ".join(f"{e.involved_object_name}: {e.reason}: {e.message}" for e in backend.get_job_events(name))
        tail = "\n".join(list(backend.get_job_logs(name))[-20:])
        raise UserError(f"{handle} ended {job.status}: {events or 'no events'}\n{tail}".rstrip())


def _follow(client: TrainerClient | RuntimeBackend, name: str, poll_s: float, timeout_s: float, logs: bool):
    """Poll the job until it ends: its status changes, and with `logs` its new log lines, go to stdout. A few
    failed polls in a row (an API server restarting during a days-long job) are waited out, not fatal."""
    status, printed, failures, deadline = None, 0, 0, time.monotonic() + timeout_s
    while True:
        try:
            job = client.get_job(name)
        except (RuntimeError, TimeoutError) as err:  # how the SDK reports the API's errors
            failures += 1
            if failures > MAX_FAILED_POLLS:
                raise UserError(f"trainjob {name}: {failures} status polls in a row failed, the last: {err}") from err
            time.sleep(poll_s)
            continue
        failures = 0
        if job.status != status:
            status = job.status
            print(f"trainjob {name}: {status}", flush=True)
        if logs:
            lines = list(client.get_job_logs(name))
            for line in lines[printed:]:
                print(line, flush=True)
            printed = len(lines)
        if status in _DONE:
            return job
        if time.monotonic() > deadline:
            raise UserError(f"trainjob {name}: still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _worker(parameters: dict) -> None:
    """What the local backend runs under torchrun: its source is copied into the job's script, so it imports
    what it needs. The backend runs the script from its own temporary folder: go back to the launch's."""
    import os
    import runpy
    import sys

    os.chdir(parameters["cwd"])
    sys.argv = [parameters["module"], *parameters["argv"]]
    runpy.run_module(parameters["module"], run_name="__main__", alter_sys=True)


@contextlib.contextmanager
def _this_torchrun():
    """The local backend starts `<a fresh venv>/bin/torchrun`, filling that venv from PyPI when told which
    packages; offline, and to run exactly this environment's torch and mug, it gets this interpreter's
    torchrun (os.path.join keeps an absolute path). Only the command is changed, while the job is built."""
    from kubeflow.trainer.backends.localprocess import constants

    saved = constants.TORCH_COMMAND
    constants.TORCH_COMMAND = os.path.join(os.path.dirname(sys.executable), "torchrun")
    try:
        yield
    finally:
        constants.TORCH_COMMAND = saved


def _remove_venv(name: str) -> None:
    """The backend makes a venv per job (tempfile.mkdtemp(prefix=NAME)) and removes it only after a success."""
    for path in Path(tempfile.gettempdir()).glob(f"{name}*"):
        if (path / "pyvenv.cfg").is_file():
            shutil.rmtree(path, ignore_errors=True)


def run_local(worker_args: list[str], spec: LaunchSpec, module: str = "mug.cli", poll_s: float = 1.0) -> int:
    """Run the job with the SDK's local-process backend and stream its log; 0 if it completed, else 1. torchrun
    reads the processes per node from PET_NPROC_PER_NODE, as in a TrainJob's pods, and rendezvous on a free port
    (PET_STANDALONE)."""
    from kubeflow.trainer import CustomTrainer, LocalProcessBackendConfig, TrainerClient
    from kubeflow.trainer.options import Name

    spec.validate()
    client = TrainerClient(backend_config=LocalProcessBackendConfig())
    env = {**os.environ, **default_env(spec), **spec.env}  # the job's whole environment (the backend's Popen env)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
    env |= {"PET_NPROC_PER_NODE": str(spec.nproc_per_node), "PET_STANDALONE": "1"}
    parameters = {"cwd": os.getcwd(), "module": module, "argv": list(worker_args)}
    trainer = CustomTrainer(func=_worker, func_args=parameters, env=env)
    with _this_torchrun():
        name = client.train(runtime=spec.runtime, trainer=trainer, options=[Name(name=job_name(spec))])
    job = _follow(client, name, poll_s, timeout_s=float("inf"), logs=True)
    _remove_venv(name)
    if job.status == "Complete":
        return 0
    print(f"{spec.name}: the local TrainJob failed; torchrun's report above names the failing rank", file=sys.stderr)
    return 1
