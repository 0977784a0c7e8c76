"""Every pipeline compiles to IR YAML with the components, parameters and cluster settings a Kubeflow cluster
needs, and no secret value in it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import compiler

import mug
from components.base_image import mug_image
from pipelines import PIPELINES

COMPONENTS = {
    "mug-pretrain": {"validate-data", "pretrain", "evaluate-checkpoint", "beats-production", "register-model"},
    "mug-benchmark": {"validate-data", "pretrain", "evaluate-checkpoint", "rank-objectives"},
    "mug-retrain": {
        "validate-data",
        "whats-new",
        "production-model",
        "pretrain",
        "evaluate-checkpoint",
        "beats-production",
        "register-model",
    },
}
TRAINING = {"pretrain", "evaluate-checkpoint"}  # the tasks that get GPUs


def _compile(name: str, tmp_path) -> tuple[dict, dict]:
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(PIPELINES[name], str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, nested DAGs (dsl.If, ParallelFor) included, by task name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks |= component.get("dag", {}).get("tasks", {})
    return tasks


def _component_of(spec: dict, task: dict) -> str:
    return task["componentRef"]["name"].removeprefix("comp-")


def test_image_is_the_package_version_unless_overridden(monkeypatch):
    monkeypatch.delenv("MUG_IMAGE", raising=False)
    assert mug_image() == f"ghcr.io/mug-ml/mug:{mug.__version__}"
    monkeypatch.setenv("MUG_IMAGE", "registry.example.com/mug:dev")
    assert mug_image() == "registry.example.com/mug:dev"


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipeline_compiles_with_components_and_parameters(name, tmp_path):
    spec, _ = _compile(name, tmp_path)
    assert spec["pipelineInfo"]["name"] == name
    used = {_component_of(spec, task) for task in _tasks(spec).values()}
    assert COMPONENTS[name] <= {c.rstrip("-0123456789") for c in used}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    expected = {"data", "data_revision", "eval_data", "steps", "batch_size", "gpus", "nproc", "nodes", "thresholds"}
    assert expected <= set(parameters)
    if name != "mug-retrain":  # retraining keeps the production model's objective and preset
        assert {"preset", "objective" if name == "mug-pretrain" else "objectives"} <= set(parameters)
    assert parameters["data"]["defaultValue"] == ["data/train"]
    assert parameters["gpus"]["defaultValue"] == 0
    executors = spec["deploymentSpec"]["executors"]
    assert {executor["container"]["image"] for executor in executors.values()} == {mug_image()}
    assert not any("pip install" in " ".join(e["container"]["command"]) for e in executors.values())


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_caching_is_off_on_every_task(name, tmp_path):
    spec, _ = _compile(name, tmp_path)
    for task_name, task in _tasks(spec).items():
        if "componentRef" in task and "dag" not in spec["components"][task["componentRef"]["name"]]:
            assert task["cachingOptions"].get("enableCache", False) is False, task_name


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_gpu_tasks_get_accelerators_shm_node_and_secret(name, tmp_path):
    spec, platform = _compile(name, tmp_path)
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu_executors = {e for e in executors if e.removeprefix("exec-").rstrip("-0123456789") in TRAINING}
    assert gpu_executors and set(k8s) == gpu_executors
    for executor in gpu_executors:
        accelerator = executors[executor]["container"]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu"
        assert accelerator["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--gpus']}}"
        settings = k8s[executor]
        assert settings["emptyDirMounts"] == [
            {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "16Gi"}
        ]
        assert settings["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in settings["tolerations"]
        (secret,) = settings["secretAsEnv"]
        assert secret["secretName"] == "wandb" and secret["optional"] is True
        assert secret["keyToEnv"] == [{"secretKey": "api-key", "envVar": "WANDB_API_KEY"}]
    # KFP plumbs a parameter into a ParallelFor's DAG only when a task input uses it, not for an accelerator
    # limit alone: the GPU tasks take `gpus` as an input so that the loop DAG receives it.
    for component in spec["components"].values():
        if "dag" in component and TRAINING & set(component["dag"]["tasks"]):
            assert "pipelinechannel--gpus" in component["inputDefinitions"]["parameters"]


def test_no_secret_value_in_the_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "sk-this-must-not-leak")
    for name in PIPELINES:
        compiler.Compiler().compile(PIPELINES[name], str(tmp_path / "p.yaml"))
        assert "sk-this-must-not-leak" not in (tmp_path / "p.yaml").read_text()


def test_image_and_platform_come_from_the_environment_at_import(tmp_path):
    """The decorators build the pipelines when `pipelines` is imported: the variables must be set before it."""
    env = os.environ | {
        "MUG_IMAGE": "registry.example.com/mug:dev",
        "MUG_ACCELERATOR_TYPE": "amd.com/gpu",
        "MUG_NODE_SELECTOR": "pool=h200,zone=a",
        "MUG_SHM_SIZE": "64Gi",
        "MUG_WANDB_SECRET": "team-wandb",
        "MUG_SHARED_PVC": "mug-shared",
    }
    path = tmp_path / "p.yaml"
    script = (
        "from kfp import compiler; from pipelines import PIPELINES; "
        f"compiler.Compiler().compile(PIPELINES['mug-pretrain'], {str(path)!r})"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=Path(__file__).parents[1])
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example.com/mug:dev"}
    assert executors["exec-pretrain"]["container"]["resources"]["accelerator"]["resourceType"] == "amd.com/gpu"
    settings = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert settings["nodeSelector"]["labels"] == {"pool": "h200", "zone": "a"}
    assert settings["emptyDirMounts"][0]["sizeLimit"] == "64Gi"
    assert settings["secretAsEnv"][0]["secretName"] == "team-wandb"
    # multi-node runs: the claim shared with the Volcano job's pods, and what the task tells the job
    (claim,) = settings["pvcMount"]
    assert (claim["mountPath"], claim["pvcNameParameter"]["runtimeValue"]["constant"]) == (
        "/mnt/mug-shared",
        "mug-shared",
    )
    env = {e["name"]: e["value"] for e in executors["exec-pretrain"]["container"]["env"]}
    assert env["MUG_SHARED_PVC"] == "mug-shared" and env["MUG_IMAGE"] == "registry.example.com/mug:dev"
    assert env["MUG_MULTI_NODE"] == "trainjob" and env["MUG_TRAINER_RUNTIME"] == "torch-distributed"
    assert (env["MUG_WANDB_SECRET"], env["MUG_SHM_SIZE"]) == ("team-wandb", "64Gi")  # for the TrainJob's pods


def test_pretrain_registers_only_inside_the_condition(tmp_path):
    spec, _ = _compile("mug-pretrain", tmp_path)
    root = spec["root"]["dag"]["tasks"]
    assert "register-model" not in root
    (condition,) = [task for task in root.values() if "triggerPolicy" in task]
    assert "beats-production-Output" in condition["triggerPolicy"]["condition"]
    assert "register-model" in spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]


def test_retrain_spends_nothing_after_the_check_unless_something_is_new(tmp_path):
    spec, _ = _compile("mug-retrain", tmp_path)
    root = spec["root"]["dag"]["tasks"]
    assert {name for name, task in root.items() if "triggerPolicy" not in task} == {"validate-data", "whats-new"}
    (condition,) = [task for task in root.values() if "triggerPolicy" in task]
    assert "whats-new-Output" in condition["triggerPolicy"]["condition"]  # what kfp.local can branch on
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert {"production-model", "pretrain", "beats-production"} <= set(inner)
    # The local run's summary reads the two evaluations by task name: the new model's first, then production's.
    from pipelines.local import _EVALUATIONS

    producers = [
        inner[task]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] for task in _EVALUATIONS
    ]
    assert producers == ["pretrain", "production-model"]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["force"]["defaultValue"] is False
    assert set(spec["root"]["outputDefinitions"]["parameters"]) == {"status"}


def _cluster_spec(tmp_path, monkeypatch, launcher: str):
    from mug.errors import UserError
    from mug.steps import cluster_spec

    monkeypatch.delenv("MUG_SHARED_PVC", raising=False)
    with pytest.raises(UserError, match="nodes=2 needs a volume shared with the training pods.*MUG_SHARED_PVC"):
        cluster_spec(2, 8)
    env = {"MUG_SHARED_PVC": "mug-shared", "MUG_SHARED_DIR": str(tmp_path), "MUG_IMAGE": "registry.example.com/mug:dev"}
    env |= {"MUG_MULTI_NODE": launcher, "MUG_SHM_SIZE": "64Gi", "MUG_WANDB_SECRET": "team-wandb"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec, shared = cluster_spec(2, 8)
    assert shared == tmp_path
    return spec


def _rendered(spec, tmp_path) -> dict:
    from mug.train.config import load_train_config
    from mug.train.launch import launch, pretrain_argv

    cfg = load_train_config(overrides={"data": ["s3-shards.tar"], "out": str(tmp_path / "run")})
    return yaml.safe_load(launch(pretrain_argv(cfg), spec, dryrun=True))


def test_a_multi_node_pretrain_step_renders_a_trainjob_on_the_shared_claim(tmp_path, monkeypatch):
    """What the pretrain task submits for nodes=2 by default (rendered, not submitted: there is no cluster)."""
    job = _rendered(_cluster_spec(tmp_path, monkeypatch, "trainjob"), tmp_path)
    assert job["kind"] == "TrainJob" and job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    trainer = job["spec"]["trainer"]
    assert (trainer["image"], trainer["numNodes"]) == ("registry.example.com/mug:dev", 2)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert f"out={json.dumps(str(tmp_path / 'run'))}" in trainer["command"]  # the job writes to the shared folder
    secret = {e["name"]: e for e in trainer["env"]}["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert (secret["name"], secret["key"]) == ("team-wandb", "api-key")
    (patch,) = job["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[str(tmp_path)]["persistentVolumeClaim"]["claimName"] == "mug-shared"
    assert mounts["/dev/shm"]["emptyDir"]["sizeLimit"] == "64Gi"


def test_a_multi_node_pretrain_step_renders_a_volcano_job_on_the_shared_claim(tmp_path, monkeypatch):
    """The alternative, MUG_MULTI_NODE=volcano."""
    job = _rendered(_cluster_spec(tmp_path, monkeypatch, "volcano"), tmp_path)
    tasks = job["spec"]["tasks"]
    assert len(tasks) == 2
    pod = tasks[0]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/mug:dev"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(tmp_path)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == "mug-shared"
    assert str(tmp_path / "run") in " ".join(container["command"])  # the job writes to the shared folder


def test_an_unknown_launcher_is_named(tmp_path, monkeypatch):
    from mug.errors import UserError

    with pytest.raises(UserError, match="MUG_MULTI_NODE must be one of trainjob, volcano, got 'slurm'"):
        _cluster_spec(tmp_path, monkeypatch, "slurm")


def test_an_unknown_launcher_fails_the_compile(tmp_path):
    env = os.environ | {"MUG_MULTI_NODE": "slurm"}
    script = "from pipelines import PIPELINES"  # the decorators build the pipelines, and their tasks, at import
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=Path(__file__).parents[1], capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "MUG_MULTI_NODE must be one of trainjob, volcano, got 'slurm'" in run.stderr
