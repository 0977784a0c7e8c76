"""Launching as a Kubeflow Trainer TrainJob: the manifest rendered without a cluster, and real 2-process jobs
through the Kubeflow SDK's local-process backend, which equal the torchx launch of the same run."""

import contextlib
import io
import json

import pytest
import torch
import yaml

from mug.checkpoint import load_checkpoint
from mug.cli import main
from mug.errors import UserError
from mug.train.launch import launch
from mug.train.launch_spec import LaunchSpec
from tests.test_launch import WORKER, kube_spec
from tests.test_train import _run, micro_argv, micro_settings, shards  # noqa: F401 (shards: a fixture)

ARGS = ["pretrain", "--preset", "tiny", "--steps", "10", "--out", "/mnt/runs/a b"]


def trainjob_spec(**overrides) -> LaunchSpec:
    """test_launch's Volcano job as a TrainJob: 2 nodes of 8 GPUs, /dev/shm 16Gi, a claim, the W&B key."""
    trainjob = {"scheduler": "trainjob", "cpus_per_node": 32, "memory_gb": 256, "namespace": "research"}
    return kube_spec(**{**trainjob, "env_secrets": ["wandb:api-key=WANDB_API_KEY"], **overrides})


def test_dryrun_renders_the_trainjob():
    job = yaml.safe_load(launch(ARGS, trainjob_spec(), dryrun=True))

    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert job["metadata"]["namespace"] == "research"
    assert job["metadata"]["name"].startswith("mug-pretrain-")  # a suffix per launch: re-runs do not collide
    assert job["spec"]["runtimeRef"] == {"kind": "ClusterTrainingRuntime", "name": "torch-distributed"}

    trainer = job["spec"]["trainer"]
    assert trainer["image"] == "registry.example/mug:1.0"
    assert trainer["numNodes"] == 2
    resources = {"cpu": "32", "memory": "256G", "nvidia.com/gpu": "8"}
    assert trainer["resourcesPerNode"] == {"requests": resources, "limits": resources}
    assert trainer["command"] == ["torchrun", "--nproc-per-node=8", "-m", "mug.cli", *ARGS]
    env = {e["name"]: e for e in trainer["env"]}
    assert env["WANDB_MODE"]["value"] == "online" and env["OMP_NUM_THREADS"]["value"] == "4"
    assert "PATH" not in env  # the launching venv's bin dir means nothing in the image
    secret = {"name": "wandb", "key": "api-key", "optional": True}
    assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": secret}}

    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    pod = node["template"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    assert container["name"] == "node"
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts["/dev/shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert mounts["/mnt/runs"]["persistentVolumeClaim"] == {"claimName": "runs-pvc"}


def test_the_cli_renders_the_same_training_command(shards):  # noqa: F811 (a fixture)
    argv = ["pretrain", "--scheduler", "trainjob", "--image", "ghcr.io/acme/mug:0.1.0", "--nodes", "4"]
    argv += ["--gpus-per-node", "8", "--nproc", "8", "--runtime", "torch-h100", "--dryrun"]
    argv += micro_argv(micro_settings("mae", data=[shards], steps=6))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    job = yaml.safe_load(out.getvalue())
    assert job["spec"]["runtimeRef"]["name"] == "torch-h100" and job["spec"]["trainer"]["numNodes"] == 4
    command = job["spec"]["trainer"]["command"]
    assert command[:4] == ["torchrun", "--nproc-per-node=8", "-m", "mug.cli"]
    assert command[4] == "pretrain" and "steps=6" in command and f"data={json.dumps([shards])}" in command


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image": None}, "image"),
        ({"env_secrets": ["wandb"]}, "env_secrets"),
        ({"mounts": ["type=bind,src=/data,dst=/data"]}, "mounts"),
        ({"shm_size": "lots"}, "shm_size"),
        ({"scheduler": "trainjob-local"}, "nodes"),
        ({"scheduler": "trainjob-local", "nodes": 1}, "env_secrets"),
    ],
)
def test_validation_names_the_bad_field(overrides, field):
    with pytest.raises(UserError, match=rf"^{field}[ .]"):
        trainjob_spec(**overrides).validate()


def test_submit_without_a_cluster_is_a_user_error(unreachable_cluster):
    with pytest.raises(UserError, match=r"^trainjob: cannot submit mug-pretrain to namespace research: .*"):
        launch(ARGS, trainjob_spec())


@pytest.mark.slow
def test_local_backend_runs_two_gloo_processes_and_reports_a_failure(tmp_path, capsys):
    (tmp_path / "dist_worker.py").write_text(WORKER)
    (tmp_path / "out").mkdir()
    spec = LaunchSpec(scheduler="trainjob-local", nproc_per_node=2, env={"PYTHONPATH": str(tmp_path)})

    assert launch(["ok", str(tmp_path / "out")], spec, module="dist_worker") == 0
    results = [json.loads((tmp_path / "out" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(r["world_size"] == 2 and r["sum"] == 1 for r in results)
    out = capsys.readouterr().out
    assert "rank 1 sum 1" in out and ": Complete" in out  # the job's log and status reach our stdout

    assert launch(["fail", str(tmp_path / "out")], spec, module="dist_worker") == 1
    captured = capsys.readouterr()
    assert "exitcode  : 3" in captured.out and ": Failed" in captured.out  # torchrun's report names the rank
    assert "the local TrainJob failed" in captured.err


@pytest.mark.slow
def test_local_trainjob_equals_the_torchx_launch_of_the_same_run(shards, tmp_path):  # noqa: F811 (a fixture)
    """`mug pretrain --scheduler trainjob-local --nproc 2` against `--nproc 2` (torchx): two gloo ranks each,
    disjoint data per rank, and the same weights at the end."""
    settings = micro_argv(micro_settings("mug", data=[shards], steps=4))
    runs = {}
    for scheduler in ("trainjob-local", "local_cwd"):
        out = tmp_path / scheduler
        run = _run(["pretrain", "--scheduler", scheduler, "--nproc", "2", "--out", str(out), *settings])
        log, _ = run.communicate(timeout=300)
        assert run.returncode == 0, log
        summary = json.loads((out / "summary.json").read_text())
        assert summary["world_size"] == 2
        first, second = sorted(summary["ranks"], key=lambda r: r["rank"])
        assert set(first["first_keys"]).isdisjoint(second["first_keys"])  # each rank drew its own samples
        runs[scheduler] = load_checkpoint(out / "model")[0].state_dict(), summary

    (trainjob, trainjob_summary), (torchx, torchx_summary) = runs["trainjob-local"], runs["local_cwd"]
    assert trainjob_summary["ranks"] == torchx_summary["ranks"]
    assert trainjob.keys() == torchx.keys()
    assert all(torch.equal(trainjob[name], torchx[name]) for name in trainjob)
