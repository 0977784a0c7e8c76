"""The pipeline steps without Kubeflow: each Kubeflow component (components/) calls one of these with plain paths
and values and copies what it returns into its artifacts' metadata, so a step runs and is tested without kfp."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mug.errors import UserError

if TYPE_CHECKING:
    from mug.promotion import Evidence

SHARDS = "shards.json"  # in a validated dataset's folder: the exact shard list and its lineage
METRICS, CONFUSION, REPORT = "metrics.json", "confusion.json", "report.html"
HEADLINE_LABEL = "shape"  # the label whose probe confusion matrix a run shows (the most semantic one)


class DataGateFailed(UserError):
    """The shards failed the data gate."""


def validate(
    data: list[str],
    out_dir: str | Path,
    report: str | Path,
    revision: str = "",
    tokenizer: str | None = None,
    thresholds: dict | None = None,
    min_side: int | None = None,
) -> dict[str, Any]:
    """Run the data gate on `data` (shards, or DVC addresses: `mug.data.dvc_source`); write validation.json and
    the shard list with its lineage to `out_dir`, and the HTML report to `report`. Returns {"shards": what later
    tasks read (the shard list, or the DVC addresses by commit), "lineage", "metrics"}; raises DataGateFailed
    naming each failed check on one line. The lineage of DVC addresses is what DVC resolved, and `revision`
    is then ignored; otherwise `mug.lineage`'s, `revision` naming the data when given."""
    from mug.data.dvc_source import materialize
    from mug.data.gate.report import write_report
    from mug.data.gate.validate import validate_shards
    from mug.data.loading.urls import expand_shards
    from mug.lineage import data_md5, data_revision

    source = materialize(data)
    shards = expand_shards(source.shards)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = validate_shards(shards, thresholds or None, tokenizer or None, min_side or None)
    write_report(result, out)
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(out / "validation.html", report)
    if not result.passed:
        failures = result.failures()
        ran = sum(not check.skipped for check in result.checks)
        raise DataGateFailed(
            f"data gate failed {len(failures)} of {ran} checks on {result.rows} samples: {'; '.join(failures)}"
        )
    lineage = source.lineage or {"data_md5": data_md5(shards), "data_revision": data_revision(shards, revision)}
    read = source.sources if source.lineage else shards
    (out / SHARDS).write_text(json.dumps({"shards": read, **lineage}, indent=2) + "\n")
    counts = result.counts()
    metrics = {key: float(value) for key, value in counts.items() if isinstance(value, int)}
    metrics |= {f"gate/{c.name}": float(c.observed) for c in result.checks if c.observed is not None}
    return {"shards": read, "lineage": lineage, "metrics": metrics}


SHARED_DIR = "/mnt/mug-shared"  # where a pipeline's training pods and the pod launching them share files


MULTI_NODE = {"trainjob": "trainjob", "volcano": "kubernetes"}  # $MUG_MULTI_NODE -> the scheduler it launches with


def multi_node_scheduler(launcher: str) -> str:
    """The launch scheduler of a $MUG_MULTI_NODE value, checked where the pipelines are compiled and where the
    task runs."""
    if launcher not in MULTI_NODE:
        raise UserError(f"MUG_MULTI_NODE must be one of {', '.join(MULTI_NODE)}, got {launcher!r}")
    return MULTI_NODE[launcher]


def cluster_spec(nodes: int, gpus: int) -> tuple[Any, Path]:
    """The multi-node job of a pre-training step, and the folder on the volume this pod shares with its pods: a
    Kubeflow Trainer TrainJob on $MUG_TRAINER_RUNTIME ($MUG_MULTI_NODE=trainjob, the default) or a Volcano job
    (volcano). The pipeline's platform settings put what it needs in this pod's environment: MUG_IMAGE (the
    image), MUG_SHARED_PVC (a ReadWriteMany claim, mounted here at MUG_SHARED_DIR), MUG_SHM_SIZE, the W&B Secret
    for a TrainJob (MUG_WANDB_SECRET, MUG_WANDB_SECRET_KEY) and MUG_VOLCANO_QUEUE."""
    from mug.train.launch_spec import LaunchSpec

    env = os.environ.get
    launcher = env("MUG_MULTI_NODE", "trainjob")
    scheduler = multi_node_scheduler(launcher)
    pvc, shared = env("MUG_SHARED_PVC"), Path(env("MUG_SHARED_DIR", SHARED_DIR))
    if not pvc or not shared.is_dir():
        raise UserError(
            f"pretrain: nodes={nodes} needs a volume shared with the training pods; compile the pipelines with "
            f"MUG_SHARED_PVC=<a ReadWriteMany PersistentVolumeClaim> (it is mounted at {shared})"
        )
    secret, secrets = env("MUG_WANDB_SECRET"), []
    if secret and launcher == "trainjob":  # its key as WANDB_API_KEY (torchx could only pass all keys as named)
        secrets = [f"{secret}:{env('MUG_WANDB_SECRET_KEY', 'api-key')}=WANDB_API_KEY"]
    namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")  # this pod's, when in a cluster
    spec = LaunchSpec(
        scheduler=scheduler,
        nodes=nodes,
        nproc_per_node=max(gpus, 1),
        gpus_per_node=gpus,
        image=env("MUG_IMAGE"),
        queue=env("MUG_VOLCANO_QUEUE", "default"),
        runtime=env("MUG_TRAINER_RUNTIME", "torch-distributed"),
        namespace=namespace.read_text().strip() if namespace.is_file() else "default",
        shm_size=env("MUG_SHM_SIZE"),
        env_secrets=secrets,
        mounts=[f"type=volume,src={pvc},dst={shared}"],  # the run, W&B's offline files included, lands here
    )
    return spec, shared


def pretrain(
    shards: list[str],
    model_dir: str | Path,
    settings: dict[str, Any],
    nproc: int = 1,
    init_from: str | Path | None = None,
    logs_dir: str | Path | None = None,
    gpus: int = 0,
    nodes: int = 1,
) -> dict[str, Any]:
    """Train on `shards` with `settings` (TrainConfig fields) and leave the final checkpoint in `model_dir`, and
    summary.json and an offline W&B run (for `wandb sync`) in `logs_dir`.
    `nproc` > 1 launches that many DDP processes through torchx on this node; 0 means one per GPU of the `gpus`
    the task holds (at least one). `nodes` > 1 submits a job of `nodes` pods with `gpus` GPUs each
    (`cluster_spec`: a TrainJob, or a Volcano job) and waits for it; its output comes back through the shared
    volume.
    `init_from` (a checkpoint directory) continues from its weights with its model: objective, preset and model
    overrides come from it, so a retraining run cannot build a different model. DVC addresses in `shards` are
    fetched here (launched processes fetch them themselves). Returns the run's summary."""
    from mug.checkpoint import read_config
    from mug.data.dvc_source import materialize
    from mug.train.config import load_train_config

    nproc = nproc or max(gpus, 1)
    overrides = dict(settings)  # a pipeline's numbers arrive as doubles: TrainConfig takes a whole 4.0 as 4
    if init_from is not None:
        saved = read_config(init_from)[1].get("train", {})
        overrides |= {key: saved[key] for key in ("objective", "preset", "model") if key in saved}
        overrides["init_from"] = str(init_from)
    if nodes > 1:
        spec, shared = cluster_spec(nodes, gpus)
        workspace = tempfile.TemporaryDirectory(prefix="mug-pretrain-", dir=shared)
    else:
        workspace = tempfile.TemporaryDirectory(prefix="mug-pretrain-")
    with workspace as run_dir:
        cfg = load_train_config(overrides=overrides | {"data": list(shards), "out": run_dir})
        if nodes > 1:
            from mug.train.launch import launch, pretrain_argv, wait_for

            wait_for(launch(pretrain_argv(cfg), spec))
        elif nproc > 1:
            from mug.train.launch import launch, pretrain_argv
            from mug.train.launch_spec import LaunchSpec

            code = launch(pretrain_argv(cfg), LaunchSpec(nproc_per_node=nproc))
            if code != 0:
                raise UserError(f"pretrain: the {nproc} training processes failed with exit code {code}")
        else:
            from mug.train.loop import train

            train(dataclasses.replace(cfg, data=materialize(cfg.data).shards))
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        if logs_dir is not None:
            Path(logs_dir).mkdir(parents=True, exist_ok=True)
            for name in ("summary.json", "wandb"):
                if (Path(run_dir) / name).exists():
                    shutil.move(Path(run_dir) / name, Path(logs_dir) / name)
        shutil.rmtree(model_dir, ignore_errors=True)
        Path(model_dir).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(run_dir) / "model", model_dir)
    return summary


def evaluate(
    checkpoint_dir: str | Path,
    data: list[str],
    out_dir: str | Path,
    report: str | Path,
    batch_size: int = 64,
    max_samples: int | None = None,
    device: str = "cpu",
    gpus: int | None = None,
) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Evaluate the checkpoint on `data` (shards or DVC addresses; metrics.json and confusion.json in `out_dir`,
    the HTML report at `report`); `device` "auto" picks a GPU when there is one (and the task holds one: `gpus` 0
    means the CPU). Returns the metrics and the headline confusion matrix ({"name", "labels", "matrix"}, or None)."""
    import torch

    from mug.data.dvc_source import materialize
    from mug.evaluation.evaluate import EvalOptions, evaluate_checkpoint

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and gpus != 0 else "cpu"

    out = Path(out_dir)
    opts = EvalOptions(batch_size=batch_size, max_samples=max_samples or None, device=device, progress=False)
    metrics = evaluate_checkpoint(checkpoint_dir, materialize(data).shards, out, opts)
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(out / REPORT, report)
    confusion = json.loads((out / CONFUSION).read_text())
    probes = [name for name in confusion if name.startswith("probe_cls/")]
    headline = f"probe_cls/{HEADLINE_LABEL}" if f"probe_cls/{HEADLINE_LABEL}" in confusion else next(iter(probes), None)
    return metrics, ({"name": headline, **confusion[headline]} if headline else None)


LINEAGE_KEYS = (
    "objective",
    "preset",
    "steps",
    "data_md5",
    "data_revision",
    "data_ref",
    "data_source",
    "code_version",
    "init_from",
)


def model_metadata(summary: dict[str, Any], dataset: dict[str, Any], init_from: str = "") -> dict[str, Any]:
    """What a trained Model artifact records (`LINEAGE_KEYS`), from the run's summary.json and the validated
    dataset's metadata (data_ref and data_source "" unless the data came by DVC address); `init_from` names the
    model the run continued, if any."""
    train = summary["train"]
    return {
        "objective": train["objective"],
        "preset": train["preset"],
        "steps": summary["steps"],
        "data_md5": dataset["data_md5"],
        "data_revision": dataset["data_revision"],
        "data_ref": dataset.get("data_ref", ""),
        "data_source": dataset.get("data_source", ""),
        "code_version": summary["code_version"],
        "init_from": init_from,
    }


def numbers(metadata: dict[str, Any]) -> dict[str, float]:
    """The metrics an artifact's metadata holds: its numeric entries (flags such as `promoted` are not)."""
    return {k: v for k, v in metadata.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def evidence(metrics: dict[str, Any], folder: str | Path | None = None) -> Evidence:
    """What the model gate weighs for one evaluation: its metrics (an artifact's numeric metadata) and the
    per-image outcomes written beside them in `folder` (the Metrics artifact's path), when there."""
    from mug.evaluation.significance import OUTCOMES, read_outcomes
    from mug.promotion import Evidence

    return Evidence(numbers(metrics), read_outcomes(Path(folder) / OUTCOMES) if folder is not None else None)


def register(
    model_dir: str | Path,
    metrics: dict[str, Any],
    model_metadata: dict[str, Any],
    pipeline_run: str,
    model_name: str,
    registry_uri: str | None = None,
    metrics_dir: str | Path | None = None,
    baseline: dict[str, Any] | None = None,
    baseline_dir: str | Path | None = None,
    training_noise: float | None = None,
    trigger: str = "",
):
    """Register the checkpoint with its eval `metrics` (and the outcomes in `metrics_dir`) and the lineage its
    Model artifact carries (data md5 and revision, code version, the run that made it, and the `trigger` of a
    retraining run: the data revision or code that was new); `baseline` (and `baseline_dir`) is production's
    evaluation on the same eval data, when the pipeline measured it; `training_noise` the gate's allowance (None:
    `mug.promotion.TRAINING_NOISE`). The version is also linked to the W&B Registry when W&B is online with a key
    (the log says which). Returns the registry's `Registration`."""
    from mug.registry import link_to_wandb, register_model

    lineage = {key: str(model_metadata[key]) for key in LINEAGE_KEYS if model_metadata.get(key) not in (None, "")}
    lineage |= {"trigger": trigger} if trigger else {}
    candidate = evidence(metrics, metrics_dir)
    registration = register_model(
        model_dir,
        candidate.metrics,
        lineage | {"pipeline_run": pipeline_run},
        model_name,
        registry_uri or None,
        outcomes=candidate.outcomes,
        baseline=evidence(baseline, baseline_dir) if baseline is not None else None,
        **_allowance(training_noise),
    )
    print(link_to_wandb(model_dir, registration))
    return registration


def _allowance(training_noise: float | None) -> dict[str, float]:
    """The gate's `training_noise` argument when a caller chose one; the gate's measured default otherwise."""
    return {} if training_noise is None else {"training_noise": float(training_noise)}


def decide_promotion(
    candidate: Evidence,
    registry_uri: str | None,
    model_name: str,
    baseline: Evidence | None = None,
    training_noise: float | None = None,
) -> tuple[bool, str]:
    """The test a pipeline branches on, with its reason: the model gate (`mug.promotion.decide`) on the
    candidate's `evidence` against production's: `baseline`'s (production evaluated on the same eval data) when
    given, else what the registry kept of production's evaluation; `training_noise` as in `register`."""
    from mug.promotion import decide
    from mug.registry import production_evidence, production_score

    if baseline is None:
        production = production_evidence(model_name, registry_uri or None)
    else:  # production was evaluated in this run: only its version is needed from the registry
        version = production_score(model_name, registry_uri or None)
        production = None if version is None else (version[0], baseline)
    decision = decide(candidate, production, **_allowance(training_noise))
    return decision.promote, decision.reason


def fetch_production(dst: str | Path, name: str, uri: str | None = None) -> tuple[Path, int, float]:
    """Download the model holding the `production` alias into `dst`: (checkpoint dir, version, its score)."""
    from mug.registry import download_model, production_score

    production = production_score(name, uri)
    if production is None:
        raise UserError(f"registry: {name} has no production version to retrain; run mug-pretrain first")
    version, score = production
    with tempfile.TemporaryDirectory(prefix="mug-production-") as tmp:
        shutil.rmtree(dst, ignore_errors=True)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(download_model(version, tmp, name, uri), dst)
    return Path(dst), version, score
