"""Launching through torchx: the Volcano job rendered without a cluster, and real 2-process gloo jobs on CPU."""

import json
import os
import shlex
import sys

import pytest
import yaml

from mug.errors import UserError
from mug.train.launch import build_app, launch
from mug.train.launch_spec import LaunchSpec

WORKER = """
import json, sys
from pathlib import Path

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
if sys.argv[1] == "fail" and rank == 1:
    sys.exit(3)
total = torch.tensor([rank])
dist.all_reduce(total)
print(f"rank {rank} sum {int(total)}", flush=True)
result = {"rank": rank, "world_size": dist.get_world_size(), "sum": int(total)}
Path(sys.argv[2], f"rank{rank}.json").write_text(json.dumps(result))
dist.destroy_process_group()
"""

ARGS = ["pretrain", "--preset", "tiny", "--steps", "10", "--out", "/runs/a b"]


def kube_spec(**overrides) -> LaunchSpec:
    values = dict(
        scheduler="kubernetes",
        image="registry.example/mug:1.0",
        nodes=2,
        nproc_per_node=8,
        gpus_per_node=8,
        queue="research",
        shm_size="16Gi",
        env={"WANDB_MODE": "online"},
        env_secrets=["wandb"],
        mounts=["type=volume,src=runs-pvc,dst=/mnt/runs"],
    )
    return LaunchSpec(**{**values, **overrides})


def test_kubernetes_dryrun_renders_the_volcano_job():
    job = yaml.safe_load(launch(ARGS, kube_spec(), dryrun=True))

    assert (job["apiVersion"], job["kind"]) == ("batch.volcano.sh/v1alpha1", "Job")
    assert job["spec"]["schedulerName"] == "volcano"
    assert job["spec"]["queue"] == "research"
    tasks = job["spec"]["tasks"]
    assert len(tasks) == 2 and sum(task["replicas"] for task in tasks) == 2  # torchx: one task per node
    for task in tasks:
        pod = task["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example/mug:1.0"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert container["resources"]["limits"]["memory"] == "32000M"

        (shm,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == shm["name"]]
        assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}

        (runs,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/mnt/runs"]
        (claim,) = [v for v in pod["volumes"] if v["name"] == runs["name"]]
        assert claim["persistentVolumeClaim"]["claimName"] == "runs-pvc"

        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["WANDB_MODE"] == "online" and env["OMP_NUM_THREADS"] == "1"
        assert "PATH" not in env  # the launching venv's bin dir means nothing in the image
        assert container["envFrom"] == [{"secretRef": {"name": "wandb"}}]

        bash, flag, script = container["command"]
        assert (bash, flag) == ("bash", "-c")
        words = shlex.split(script)
        assert words[0] == "torchrun"
        assert words[words.index("--nnodes") + 1] == "2"
        assert words[words.index("--nproc_per_node") + 1] == "8"
        module = words.index("-m")
        assert words[module + 1 :] == ["mug.cli", *ARGS]


def test_kubernetes_defaults_leave_torchx_shm_unlimited_and_add_no_secrets():
    job = yaml.safe_load(launch(ARGS, kube_spec(shm_size=None, env_secrets=[], mounts=[]), dryrun=True))
    pod = job["spec"]["tasks"][0]["template"]["spec"]
    assert [v["emptyDir"] for v in pod["volumes"]] == [{"medium": "Memory"}]
    assert "envFrom" not in pod["containers"][0]


def test_kubernetes_submit_without_a_cluster_is_a_user_error(unreachable_cluster):
    with pytest.raises(UserError, match=r"^kubernetes: cannot submit to namespace default: .*127\.0\.0\.1"):
        launch(ARGS, kube_spec())


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image": None}, "image"),
        ({"scheduler": "slurm"}, "scheduler"),
        ({"nproc_per_node": 0}, "nproc_per_node"),
        ({"nodes": 0}, "nodes"),
        ({"gpus_per_node": -1}, "gpus_per_node"),
        ({"nproc_per_node": 16}, "nproc_per_node"),
        ({"max_retries": -1}, "max_retries"),
        ({"shm_size": "lots"}, "shm_size"),
        ({"env": {"WANDB_API_KEY": "abc"}}, "env"),
        ({"scheduler": "local_cwd"}, "nodes"),
        ({"scheduler": "local_cwd", "nodes": 1}, "env_secrets"),
    ],
)
def test_validation_names_the_bad_field(overrides, field):
    with pytest.raises(UserError, match=rf"^{field}[ .]"):
        build_app(ARGS, kube_spec(**overrides))


def test_local_env_puts_this_interpreter_first_and_splits_the_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    (role,) = build_app(ARGS, LaunchSpec(nproc_per_node=2)).roles
    assert role.env["PATH"] == os.path.dirname(sys.executable)  # torchrun is found from an unactivated venv
    assert role.env["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert "OMP_NUM_THREADS" not in build_app(ARGS, LaunchSpec(nproc_per_node=2)).roles[0].env


@pytest.fixture
def worker(tmp_path):
    (tmp_path / "dist_worker.py").write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    spec = LaunchSpec(nproc_per_node=2, env={"PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"})
    return spec, out


@pytest.mark.slow
def test_local_launch_runs_two_gloo_processes(worker, capsys):
    spec, out = worker
    assert launch(["ok", str(out)], spec, module="dist_worker") == 0

    results = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world_size"] == 2 and r["sum"] == 1 for r in results)
    assert "rank 1 sum 1" in capsys.readouterr().out  # the workers' logs reach our stdout


@pytest.mark.slow
def test_local_launch_reports_the_failed_replica(worker, capsys):
    spec, out = worker
    assert launch(["fail", str(out)], spec, module="dist_worker") != 0

    err = capsys.readouterr().err
    assert "exitcode  : 3" in err  # torchrun's report, streamed from the replica's log
    assert err.strip().splitlines()[-1].startswith("mug-pretrain: replica dist_worker/0 (exit code 1) failed")
