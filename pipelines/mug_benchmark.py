"""mug-benchmark: the paper's like-for-like comparison. One validated dataset, every objective trained with the
same budget (steps, batch, recipe), each evaluated the same way, then one ranking (fan-in with dsl.Collected)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics

from components import rank_objectives
from pipelines import tasks
from pipelines.mug_pretrain import DATA, DEMO_SETTINGS, DEMO_STEPS, EVAL_DATA, TOKENIZER
from pipelines.platform import step

OBJECTIVES = ["simclr", "mae", "clip", "mug"]


class Outputs(NamedTuple):
    gate: Metrics
    table: Markdown
    chart: HTML


@dsl.pipeline(name="mug-benchmark", description="Pre-train every objective on the same data and budget; rank them.")
def mug_benchmark(
    data: list = DATA,
    data_revision: str = "",
    eval_data: list = EVAL_DATA,
    tokenizer: str = TOKENIZER,
    objectives: list = OBJECTIVES,
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
) -> Outputs:
    """Parameters as in mug-pretrain; `objectives` are trained one after another (parallelism 1): on a cluster
    each takes its own GPUs, and locally two at once would only share the same cores."""
    gate = tasks.gate(
        data=data, data_revision=data_revision, tokenizer=tokenizer, thresholds=thresholds, min_side=min_side
    )
    with dsl.ParallelFor(objectives, parallelism=1) as objective:
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
    ranking = step(
        rank_objectives(
            evaluations=dsl.Collected(evaluation.outputs["metrics"]),
            budget=f"{steps} steps of batch {batch_size}, preset {preset}",
        )
    )
    return Outputs(gate=gate.outputs["metrics"], table=ranking.outputs["table"], chart=ranking.outputs["chart"])
