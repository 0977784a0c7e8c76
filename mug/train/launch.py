"""Launch `mug pretrain` workers: through torchx, as torchrun on this machine (`local_cwd`) or a Volcano job on
Kubernetes (`kubernetes`), or as a Kubeflow Trainer TrainJob (`trainjob`, or the Kubeflow SDK's local-process
backend `trainjob-local`; `mug.train.trainjob`). Each pair runs one job definition, so the command a GPU pod runs
is the one the tests run on CPU with gloo. torchx is imported inside the functions: workers import `mug` on
hosts that may not have it."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import yaml

from mug.errors import ConfigError, UserError
from mug.train.config import TrainConfig
from mug.train.launch_spec import LaunchSpec, default_env

if TYPE_CHECKING:
    from torchx.runner import Runner
    from torchx.specs import AppDef

# torchx's kubernetes scheduler always mounts an emptyDir(medium=Memory) volume of this name at /dev/shm
# (role_to_pod); the overlay below only adds a size limit to it.
_TORCHX_SHM_VOLUME = "dshm"


def build_app(worker_args: list[str], spec: LaunchSpec, module: str = "mug.cli") -> AppDef:
    """The torchrun job (`torchrun ... -m module *worker_args` on each node) for `spec`'s scheduler."""
    import torchx
    from torchx.components.dist import torchrun
    from torchx.specs.overlays import JOIN, set_overlay

    spec.validate()
    # dist.ddp is a deprecated alias (it warns) that forwards to dist.torchrun with the same arguments.
    app = torchrun(
        *worker_args,
        m=module,
        image=spec.image or torchx.IMAGE,
        name=spec.name,
        j=f"{spec.nodes}x{spec.nproc_per_node}",
        cpu=spec.cpus_per_node,
        gpu=spec.gpus_per_node,
        memMB=spec.memory_gb * 1000,  # torchx writes memMB as "<n>M", decimal megabytes
        env={**default_env(spec), **spec.env},
        max_retries=spec.max_retries,
        mounts=[part for mount in spec.mounts for part in mount.split(",")] or None,  # torchx takes the parts
    )
    pod: dict[str, list[dict]] = {}
    if spec.scheduler == "kubernetes" and spec.shm_size:
        shm = {"name": _TORCHX_SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}
        pod[JOIN("volumes", on="name")] = [shm]
    if spec.scheduler == "kubernetes" and spec.env_secrets:
        # Containers are named per replica (cli-0, cli-1) but the overlay is per role: the image is the one
        # key they all share. envFrom keeps the values out of the job spec; torchx's env has no secretKeyRef.
        secrets = [{"secretRef": {"name": name}} for name in spec.env_secrets]
        pod[JOIN("containers", on="image")] = [{"image": spec.image, "envFrom": secrets}]
    if pod:
        set_overlay(app.roles[0], "kubernetes", "V1Pod", {"spec": pod})
    return app


def launch(worker_args: list[str], spec: LaunchSpec, dryrun: bool = False, module: str = "mug.cli") -> int | str:
    """Run the job. local_cwd, trainjob-local: wait for it with the workers' logs streamed to our stdout and
    return its exit code. kubernetes, trainjob: submit it and return its handle (`kubernetes://...`,
    `trainjob://NAMESPACE/NAME`). With `dryrun`, submit nothing and return the rendered request (the Volcano Job
    or the TrainJob as YAML)."""
    if spec.scheduler.startswith("trainjob"):
        from mug.train import trainjob

        if dryrun and spec.scheduler == "trainjob-local":
            raise ConfigError("dryrun renders a cluster's TrainJob: use the trainjob scheduler")
        if dryrun:
            return yaml.safe_dump(trainjob.render(worker_args, spec, module), sort_keys=False)
        if spec.scheduler == "trainjob":
            return trainjob.submit(worker_args, spec, module)
        return trainjob.run_local(worker_args, spec, module)

    from torchx.runner import get_runner

    app = build_app(worker_args, spec, module)
    cfg = {}
    if spec.scheduler == "kubernetes":
        # validate_spec asks the cluster to dry-run the job: only possible when submitting.
        cfg = {"queue": spec.queue, "namespace": spec.namespace, "validate_spec": not dryrun}
    with get_runner() as runner:
        if dryrun:
            return str(runner.dryrun(app, spec.scheduler, cfg=cfg))
        if spec.scheduler == "kubernetes":
            return _submit(runner, app, cfg)
        return _follow(runner, runner.run(app, spec.scheduler, cfg=cfg), spec.name)


def _submit(runner: Runner, app: AppDef, cfg: dict) -> str:
    """No kubeconfig, an unreachable API server, a spec the cluster rejects: the user's to fix, in one line."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return runner.run(app, "kubernetes", cfg=cfg)
    except (ApiException, HTTPError) as err:
        reason = str(err).strip().splitlines()[0]
        raise UserError(f"kubernetes: cannot submit to namespace {cfg['namespace']}: {reason}") from err
    except ValueError as err:  # torchx's wording for a spec the cluster's dry run rejected or a taken job name
        raise UserError(f"kubernetes: {err}") from err


def _follow(runner: Runner, handle: str, name: str) -> int:
    """local_cwd writes each replica's output to files in a log dir (deleted when the runner closes); tail
    them to our streams until the job ends."""
    from torchx.schedulers.api import Stream
    from torchx.specs import AppState
    from torchx.util.log_tee_helpers import tee_logs

    tees = [
        tee_logs(sys.stdout, handle, None, runner, should_tail=True, streams=Stream.STDOUT),
        tee_logs(sys.stderr, handle, None, runner, should_tail=True, streams=Stream.STDERR),
    ]
    for tee in tees:
        tee.start()
    status = runner.wait(handle, wait_interval=0.5)
    for tee in tees:
        tee.join()
    if status is not None and status.state == AppState.SUCCEEDED:
        return 0
    failed = _failed_replicas(status.ui_url) if status is not None else []
    replicas = ", ".join(f"{replica} (exit code {code})" for replica, code in failed) or "unknown"
    print(f"{name}: replica {replicas} failed; torchrun's report above names the failing rank", file=sys.stderr)
    return max(1, failed[0][1]) if failed else 1  # a replica killed by a signal has a negative code


def _failed_replicas(ui_url: str) -> list[tuple[str, int]]:
    """torchx's local status has no per-replica detail; its log dir's SUCCESS file (written whatever the
    outcome) records each replica's exit code."""
    with open(os.path.join(ui_url.removeprefix("file://"), "SUCCESS")) as f:
        roles = json.load(f)["roles"]
    return [
        (f"{role}/{replica['replica_id']}", replica["exitcode"])
        for role, replicas in roles.items()
        for replica in replicas
        if replica["exitcode"]
    ]


def pretrain_argv(cfg: TrainConfig, resume: bool = False) -> list[str]:
    """A self-contained `mug pretrain` command line for the launched processes: every setting that differs from
    the default as --set KEY=JSON (YAML reads JSON), so a pod needs no file from this machine."""
    defaults = TrainConfig().to_dict()
    argv = ["pretrain"]
    for key, value in cfg.to_dict().items():
        if value != defaults[key]:
            argv += ["--set", f"{key}={json.dumps(value)}"]
    return argv + ["--resume"] * resume


def wait_for(handle: str, poll_s: float = 30.0) -> None:
    """Block until the job behind `handle` (what a cluster `launch` returns) ends; raise if it failed."""
    from mug.train import trainjob

    if handle.startswith(trainjob.HANDLE):
        return trainjob.wait_for(handle, poll_s)
    from torchx.runner import get_runner
    from torchx.specs import AppState

    with get_runner() as runner:
        status = runner.wait(handle, wait_interval=poll_s)
    if status is None or status.state != AppState.SUCCEEDED:
        state = status.state.name if status is not None else "vanished"
        message = f": {status.msg}" if status is not None and status.msg else ""
        raise UserError(f"{handle} ended {state}{message} (torchx log {handle} shows the pods' output)")
