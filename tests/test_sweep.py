"""Hyper-parameter sweeps: the Katib Experiment rendered by the Kubeflow SDK's optimizer, its trial command run
for real as Katib would start it, and local sweeps that keep their finished trials."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mug.cli import main
from mug.data.synthetic.corpus import synthesize_corpus
from mug.sweep import BEST, SPACE, TRIALS, draw, experiment, run_local, search_space
from tests.test_train import micro_settings


@pytest.fixture(scope="module")
def fixed(tmp_path_factory) -> dict:
    """Every trial's arguments: a micro MUG on a small synthetic corpus, two steps, a quick evaluation."""
    root = tmp_path_factory.mktemp("web")
    synthesize_corpus(root, train_samples=128, eval_samples=96, shard_size=64, image_size=32, progress=False)
    settings = micro_settings("mug", steps=2)
    return {
        "data": [str(root / "train")],
        "eval_data": [str(root / "eval")],
        "settings": settings,
        "eval_max_samples": 96,
    }


def test_draws_are_seeded_and_inside_the_space():
    points = draw(search_space(), 50, seed=3)
    assert points == draw(search_space(), 50, seed=3) and points != draw(search_space(), 50, seed=4)
    for name, (_, low, high) in SPACE.items():
        assert all(low <= p[name] <= high for p in points)
    lrs = sorted(p["base_lr"] for p in points)
    assert lrs[len(lrs) // 2] < (SPACE["base_lr"][1] + SPACE["base_lr"][2]) / 2  # log-uniform: the median sits low


def _experiment(fixed) -> dict:
    return experiment(fixed, trials=6, parallel=3, seed=7, image="registry.example/mug:1.0", namespace="research")


def test_render_builds_the_katib_experiment(fixed):
    exp = _experiment(fixed)
    assert (exp["apiVersion"], exp["kind"]) == ("kubeflow.org/v1beta1", "Experiment")
    assert exp["metadata"]["namespace"] == "research"
    spec = exp["spec"]
    assert spec["objective"]["objectiveMetricName"] == "transfer_score" and spec["objective"]["type"] == "maximize"
    assert (spec["maxTrialCount"], spec["parallelTrialCount"]) == (6, 3)
    assert spec["algorithm"] == {
        "algorithmName": "random",
        "algorithmSettings": [{"name": "random_state", "value": "7"}],
    }
    parameters = {p["name"]: p for p in spec["parameters"]}
    assert parameters["base_lr"]["feasibleSpace"] == {"distribution": "logUniform", "min": "0.0003", "max": "0.005"}
    assert set(parameters) == {"base_lr", "w_rec", "w_cap"}

    job = spec["trialTemplate"]["trialSpec"]
    assert job["kind"] == "TrainJob" and job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    trainer = job["spec"]["trainer"]
    assert trainer["image"] == "registry.example/mug:1.0" and trainer["numNodes"] == 1
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "1"
    bash, flag, script = trainer["command"]
    assert (bash, flag) == ("bash", "-c")
    source = script.split("<< EOM", 1)[1].split("EOM", 1)[0]
    # the function goes through an unquoted here-document: only Katib's substitutions may hold a dollar sign
    assert "`" not in source and not re.sub(r"\$\{trialParameters\.\w+\}", "", source).count("$")
    assert "'base_lr': '${trialParameters.base_lr}'" in source and "'w_cap': '${trialParameters.w_cap}'" in source


def test_cli_renders_and_a_cluster_submission_without_a_cluster_is_one_line(unreachable_cluster, capsys):
    args = ["--image", "registry.example/mug:1.0", "--trials", "5", "--namespace", "team"]
    assert main(["sweep", "render", *args]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["maxTrialCount"] == 5

    assert main(["sweep", "submit", *args]) == 2
    assert "cannot create the sweep's Experiment in namespace team" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--trials", "0"), ("--steps", "-1"), ("--eval-max-samples", "-5")])
def test_bad_counts_are_named(flag, value, capsys):
    assert main(["sweep", "local", flag, value]) == 2
    assert f"{flag} must be" in capsys.readouterr().err


@pytest.mark.slow
def test_the_rendered_trial_runs_as_katib_starts_it(fixed, tmp_path):
    """Katib puts the sampled values into the trial's TrainJob; its container runs the command. Here the same
    bash script runs on this machine, torchrun from this environment, and prints the metric Katib collects."""
    script = _experiment(fixed)["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]["command"][2]
    for name, value in {"base_lr": "0.0015", "w_rec": "0.5", "w_cap": "1.5"}.items():
        script = script.replace(f"${{trialParameters.{name}}}", value)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    env["WANDB_MODE"] = "disabled"
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    collected = dict(re.findall(r"^(transfer_score\w*)=([-+.\deE]+)$", run.stdout, re.M))  # Katib's stdout format
    assert set(collected) == {"transfer_score", "transfer_score_low", "transfer_score_high"}
    low, score, high = (float(collected[f"transfer_score{end}"]) for end in ("_low", "", "_high"))
    assert low <= score <= high


@pytest.mark.slow
def test_local_sweep_writes_the_best_settings_and_keeps_finished_trials(fixed, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    first = run_local(fixed, trials=2, seed=0, out=tmp_path, progress=False)
    assert [row["trial"] for row in first] == [0, 1]
    assert [row["params"] for row in first] == draw(search_space(), 2, seed=0)
    for row in first:
        assert row["transfer/score_low"] <= row["transfer/score"] <= row["transfer/score_high"]
        metrics = json.loads((tmp_path / f"trial-{row['trial']}" / "evaluation" / "metrics.json").read_text())
        assert metrics["transfer/score"] == row["transfer/score"]

    best = max(first, key=lambda row: row["transfer/score"])
    settings = json.loads((tmp_path / BEST).read_text())
    assert settings["base_lr"] == best["params"]["base_lr"]
    assert settings["model"]["objective"]["w_cap"] == best["params"]["w_cap"]
    assert settings["model"]["encoder"] == fixed["settings"]["model"]["encoder"]  # the fixed settings stay

    # a longer sweep with the same seed and settings (a re-run after a crash): only the new trial trains
    model = tmp_path / "trial-0" / "model" / "model.safetensors"
    trained = model.stat().st_mtime_ns
    again = run_local(fixed, trials=3, seed=0, out=tmp_path, progress=False)
    assert again[:2] == first and model.stat().st_mtime_ns == trained
    assert len(json.loads((tmp_path / TRIALS).read_text())["trials"]) == 3
