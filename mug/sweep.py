"""Hyper-parameter sweeps of MUG: base_lr and the loss weights w_rec, w_cap, scored by the evaluation's
`transfer/score`. On a cluster, a Katib Experiment built by the Kubeflow SDK's optimizer (`kubeflow.optimizer`),
each trial a TrainJob running `trial`; here, the same trials one after another, drawn from the same search
space. The best trial's settings are written as the `settings` parameter of the pre-training pipelines."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mug.errors import UserError

# name -> (distribution, low, high): Katib's parameter types, the ranges around the shipped recipe (base_lr
# 1.5e-3, w_rec = w_cap = 1)
SPACE = {
    "base_lr": ("logUniform", 3e-4, 5e-3),
    "w_rec": ("uniform", 0.25, 2.0),
    "w_cap": ("uniform", 0.25, 2.0),
}
METRIC = "transfer_score"  # transfer/score as Katib's stdout collector reads names: [\w-]+
BEST = "best_settings.json"
# training settings that the pre-training pipelines take as parameters of their own, which win over `settings`
PIPELINE_PARAMETERS = ("objective", "preset", "steps", "batch_size", "tokenizer")
TRIALS = "trials.json"


def trial(base_lr, w_rec, w_cap, data: list, eval_data: list, settings: dict, eval_max_samples=0, out=""):
    """One trial, as a Katib trial's TrainJob runs it: the SDK copies this source into a bash here-document (so
    no backquote or dollar sign in it) and Katib puts the sampled values in as strings. Pre-train MUG with them
    on data, evaluate on eval_data, print transfer_score=VALUE for Katib's stdout collector and return the
    metrics; out keeps the model, metrics and report (empty: a temporary folder)."""
    import tempfile
    from pathlib import Path

    from mug.steps import evaluate, pretrain
    from mug.sweep import best_settings

    point = {"base_lr": float(base_lr), "w_rec": float(w_rec), "w_cap": float(w_cap)}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(out or scratch)
        pretrain(data, folder / "model", best_settings(settings, point), logs_dir=folder / "training")
        limit = int(eval_max_samples) or None
        metrics, _ = evaluate(
            folder / "model", eval_data, folder / "evaluation", folder / "report.html", max_samples=limit
        )
    for name in ("transfer/score", "transfer/score_low", "transfer/score_high"):
        print(f"{name.replace('/', '_')}={metrics[name]}", flush=True)
    return metrics


def search_space() -> dict[str, Any]:
    """SPACE as the SDK's Search parameters (Katib ParameterSpecs)."""
    from kubeflow.optimizer import Search

    make = {"uniform": Search.uniform, "logUniform": Search.loguniform}
    return {name: make[kind](low, high) for name, (kind, low, high) in SPACE.items()}


def draw(space: dict[str, Any], trials: int, seed: int) -> list[dict[str, float]]:
    """`trials` points of `space` (Search parameters), at random as Katib's `random` algorithm, from `seed`."""
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(trials):
        point = {}
        for name, spec in space.items():
            feasible = spec.feasible_space
            if feasible.list:
                point[name] = feasible.list[rng.integers(len(feasible.list))]
                continue
            low, high = float(feasible.min), float(feasible.max)
            if feasible.distribution == "logUniform":
                point[name] = float(math.exp(rng.uniform(math.log(low), math.log(high))))
            else:
                point[name] = float(rng.uniform(low, high))
        points.append(point)
    return points


def best_settings(settings: dict[str, Any], point: dict[str, float]) -> dict[str, Any]:
    """`settings` (TrainConfig fields, as the pipelines' `settings` parameter) with a trial's values in place."""
    chosen = copy.deepcopy(settings)
    chosen["base_lr"] = point["base_lr"]
    chosen.setdefault("model", {}).setdefault("objective", {}).update(w_rec=point["w_rec"], w_cap=point["w_cap"])
    return chosen


def run_local(fixed: dict[str, Any], trials: int, seed: int, out: Path, progress: bool = True) -> list[dict]:
    """Run `trials` trials here, one after another, into out/trial-N; trials.json is rewritten after each, and a
    re-run with the same seed and settings keeps the trials it finds there. Writes best_settings.json (the
    pipelines' `settings`: the best trial's values and the fixed settings that are not pipeline parameters);
    returns the rows."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    done = {json.dumps(row["params"], sort_keys=True): row for row in _read_rows(out, fixed)}
    rows = []
    points = draw(search_space(), trials, seed)
    for i, point in enumerate(tqdm(points, desc="trials", unit="trial", disable=not progress)):
        key = json.dumps(point, sort_keys=True)
        if key not in done:
            start = time.perf_counter()
            metrics = trial(**point, **fixed, out=str(out / f"trial-{i}"))
            done[key] = {"trial": i, "params": point, "seconds": round(time.perf_counter() - start, 1)}
            done[key] |= {
                name: metrics[name] for name in ("transfer/score", "transfer/score_low", "transfer/score_high")
            }
        rows.append(done[key])
        (out / TRIALS).write_text(json.dumps({"fixed": fixed, "seed": seed, "trials": rows}, indent=2) + "\n")
    best = max(rows, key=lambda row: row["transfer/score"])
    others = {key: value for key, value in fixed["settings"].items() if key not in PIPELINE_PARAMETERS}
    (out / BEST).write_text(json.dumps(best_settings(others, best["params"]), indent=2) + "\n")
    return rows


def _read_rows(out: Path, fixed: dict[str, Any]) -> list[dict]:
    """The finished trials of an earlier run into `out` with the same fixed arguments."""
    path = out / TRIALS
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text())
    return earlier["trials"] if earlier["fixed"] == fixed else []


def table(rows: list[dict]) -> str:
    """The trials as a Markdown table, best first."""
    lines = ["| trial | base_lr | w_rec | w_cap | transfer/score [95% interval] | seconds |", "|---:" * 6 + "|"]
    for row in sorted(rows, key=lambda row: -row["transfer/score"]):
        p = row["params"]
        score = f"{row['transfer/score']:+.4f} [{row['transfer/score_low']:+.4f}, {row['transfer/score_high']:+.4f}]"
        point = f"{p['base_lr']:.2e} | {p['w_rec']:.2f} | {p['w_cap']:.2f}"
        lines.append(f"| {row['trial']} | {point} | {score} | {row['seconds']} |")
    return "\n".join(lines)


def experiment(
    fixed: dict[str, Any],
    trials: int,
    parallel: int,
    seed: int,
    image: str,
    namespace: str,
    runtime: str = "torch-distributed",
    gpus: int = 1,
    record: bool = True,
) -> dict[str, Any] | str:
    """The Katib Experiment of the sweep, built by the SDK's optimizer: `trials` trials, `parallel` at a time,
    random search from `seed`, each a TrainJob of one node with `gpus` GPUs running `trial` in `image`. With
    `record`, returned as a dict without a cluster; else created in `namespace` and its name returned."""
    from kubeflow.optimizer import Objective, RandomSearch, TrialConfig
    from kubeflow.optimizer.backends.kubernetes.backend import KubernetesBackend
    from kubeflow.trainer import CustomTrainer, TrainJobTemplate

    from mug.train import trainjob

    resources = {"cpu": "8", "memory": "32G"} | ({"gpu": str(gpus)} if gpus else {})
    trainer = CustomTrainer(func=trial, func_args=dict(fixed), image=image, num_nodes=1, resources_per_node=resources)
    # a cluster's runtime is looked up by name (its own command); rendering describes a torch runtime
    template = TrainJobTemplate(trainer=trainer, runtime=trainjob.runtime(runtime, image) if record else runtime)
    arguments = dict(
        trial_template=template,
        trial_config=TrialConfig(num_trials=trials, parallel_trials=parallel),
        search_space=search_space(),
        # the first is optimised; Katib also collects the interval's ends, which `trial` prints
        objectives=[
            Objective(metric=name, direction="maximize") for name in (METRIC, f"{METRIC}_low", f"{METRIC}_high")
        ],
        algorithm=RandomSearch(random_state=seed),
    )
    if not record:
        from kubeflow.common.types import KubernetesBackendConfig

        try:
            return KubernetesBackend(KubernetesBackendConfig(namespace=namespace)).optimize(**arguments)
        except Exception as err:  # the SDK wraps the API's errors; one line naming the namespace
            raise UserError(f"katib: cannot create the sweep's Experiment in namespace {namespace}: {err}") from err
    backend = trainjob.recorder(KubernetesBackend, namespace)
    backend.trainer_backend = trainjob.sdk_backend(namespace, record=True)
    backend.optimize(**arguments)
    backend.created["metadata"]["namespace"] = namespace
    return backend.created
