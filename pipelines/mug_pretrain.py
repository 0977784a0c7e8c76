"""mug-pretrain: validate -> pretrain -> evaluate -> register, if the model beats production (or there is none).

The defaults are the main job's: the DVC sample corpus, the tiny preset on the CPU, and a step count that runs
the whole pipeline in minutes on two cores. On a cluster, point `data` at your shards and raise the budget."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Metrics, Model

from components import beats_production, register_model
from mug.promotion import TRAINING_NOISE
from pipelines import tasks
from pipelines.platform import step

DATA = ["data/train"]
EVAL_DATA = ["data/eval"]
TOKENIZER = "artifacts/tokenizer.json"
MODEL_NAME = "mug-encoder"
# The sample corpus's labels are learned slowly: at 300 steps MUG-tiny stays at its random-init floor, at 700
# (44,800 images) it clears it (transfer/score +0.046 [+0.026, +0.066], docs/benchmarks.md), and the whole demo
# fits in 10 minutes on two cores.
DEMO_STEPS = 700
# MAE's base_lr (1.5e-4) suits hundreds of epochs at batch 4096; a few hundred steps at batch 64 barely move
# with it (lr 3.75e-5). Ten times more trains all four objectives stably at this budget (benchmarks/paradigms.py).
DEMO_SETTINGS = {"base_lr": 1.5e-3}


class Outputs(NamedTuple):
    gate: Metrics
    gate_report: HTML
    model: Model
    training: Metrics
    evaluation: Metrics
    report: HTML
    registered: bool


@dsl.pipeline(name="mug-pretrain", description="Validate web shards, pre-train, evaluate, register if better.")
def mug_pretrain(
    data: list = DATA,
    data_revision: str = "",
    eval_data: list = EVAL_DATA,
    tokenizer: str = TOKENIZER,
    objective: str = "mug",
    preset: str = "tiny",
    steps: int = DEMO_STEPS,
    batch_size: int = 64,
    gpus: int = 0,
    nproc: int = 0,
    nodes: int = 1,
    device: str = "auto",
    thresholds: dict = {},  # noqa: B006 (a default the compiler reads; never mutated)
    min_side: int = 0,
    settings: dict = DEMO_SETTINGS,  # noqa: B006 (a default the compiler reads; never mutated)
    wandb: str = "offline",
    eval_max_samples: int = 0,
    registry_uri: str = "",
    model_name: str = MODEL_NAME,
    training_noise: float = TRAINING_NOISE,
) -> Outputs:
    """`data` and `eval_data` are shards (paths, folders, brace patterns, pipe: or http(s) URLs) or DVC addresses
    dvc://REPO@REV#PATH, which each task fetches from the revision's DVC remote and whose lineage is what DVC
    resolved (commit and md5); `data_revision` names plain data ("": the git commit holding it); `thresholds` {}
    is the shipped gate; `settings` any other TrainConfig field; `nproc` training processes per pod (0: one per
    GPU); `registry_uri` "" is $MUG_REGISTRY_URI or the local sqlite registry; `training_noise` the spread of
    transfer/score between re-seeded trainings of this recipe, which a new model's lead over production must
    exceed (`mug.promotion`)."""
    gate = tasks.gate(
        data=data, data_revision=data_revision, tokenizer=tokenizer, thresholds=thresholds, min_side=min_side
    )
    train = tasks.training(
        gpus,
        dataset=gate.outputs["dataset"],
        objective=objective,
        preset=preset,
        steps=steps,
        batch_size=batch_size,
        tokenizer=tokenizer,
        device=device,
        wandb=wandb,
        nproc=nproc,
        nodes=nodes,
        settings=settings,
    )
    evaluation = tasks.evaluation(
        gpus,
        model=train.outputs["model"],
        data=eval_data,
        batch_size=batch_size,
        max_samples=eval_max_samples,
        device=device,
    )
    decision = step(
        beats_production(
            candidate=evaluation.outputs["metrics"],
            registry_uri=registry_uri,
            model_name=model_name,
            training_noise=training_noise,
        )
    )
    with dsl.If(decision.output == True):  # noqa: E712 (a pipeline condition, compiled, not evaluated here)
        step(
            register_model(
                model=train.outputs["model"],
                metrics=evaluation.outputs["metrics"],
                registry_uri=registry_uri,
                model_name=model_name,
                pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                training_noise=training_noise,
            )
        )
    return Outputs(
        gate=gate.outputs["metrics"],
        gate_report=gate.outputs["report"],
        model=train.outputs["model"],
        training=train.outputs["metrics"],
        evaluation=evaluation.outputs["metrics"],
        report=evaluation.outputs["report"],
        registered=decision.output,
    )
