"""mug-retrain: the newest data -> validate -> anything new since production? -> continue pre-training the
production model -> evaluate the new and the production model on the same eval data -> register only if the new
one is better.

Meant to be scheduled: caching is off on every task, so each run reads the shards as they are now (their md5
and revision are recorded on the model) rather than reusing a result for the same parameters. When neither the
data's md5 nor the code version differs from the production version's lineage, the run ends after the check
("nothing new since production vN") unless `force` is set."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Metrics

from components import beats_production, production_model, register_model, whats_new
from mug.promotion import TRAINING_NOISE
from pipelines import tasks
from pipelines.mug_pretrain import DATA, DEMO_SETTINGS, DEMO_STEPS, EVAL_DATA, MODEL_NAME, TOKENIZER
from pipelines.platform import step


class Outputs(NamedTuple):
    gate: Metrics
    status: str


@dsl.pipeline(name="mug-retrain", description="Continue pre-training the production model on the newest data.")
def mug_retrain(
    data: list = DATA,
    data_revision: str = "",
    eval_data: list = EVAL_DATA,
    tokenizer: str = TOKENIZER,
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
    force: bool = False,
) -> Outputs:
    """The objective and model come from the production version; `tokenizer` only feeds the gate's token-length
    check (training keeps the production model's); `force` retrains even when nothing is new. `status` says what
    the check found. The tasks after the check run only when it says retrain, so their outputs are not the
    pipeline's: they lie under the run's tasks. Other parameters as in mug-pretrain."""
    gate = tasks.gate(
        data=data, data_revision=data_revision, tokenizer=tokenizer, thresholds=thresholds, min_side=min_side
    )
    news = step(
        whats_new(dataset=gate.outputs["dataset"], registry_uri=registry_uri, model_name=model_name, force=force)
    )
    with dsl.If(news.outputs["Output"] == True, name="something-new"):  # noqa: E712 (a pipeline condition)
        production = step(production_model(registry_uri=registry_uri, model_name=model_name))
        train = tasks.training(
            gpus,
            dataset=gate.outputs["dataset"],
            objective="",
            preset="",
            steps=steps,
            batch_size=batch_size,
            tokenizer="",
            device=device,
            wandb=wandb,
            nproc=nproc,
            nodes=nodes,
            settings=settings,
            init_from=production.outputs["model"],
        )
        evaluations = {}
        for name, model in (("new", train.outputs["model"]), ("production", production.outputs["model"])):
            evaluations[name] = tasks.evaluation(
                gpus, model=model, data=eval_data, batch_size=batch_size, max_samples=eval_max_samples, device=device
            ).set_display_name(f"evaluate-{name}")
        decision = step(
            beats_production(
                candidate=evaluations["new"].outputs["metrics"],
                registry_uri=registry_uri,
                model_name=model_name,
                training_noise=training_noise,
                production=evaluations["production"].outputs["metrics"],
            )
        )
        with dsl.If(decision.output == True):  # noqa: E712 (a pipeline condition, compiled, not evaluated here)
            step(
                register_model(
                    model=train.outputs["model"],
                    metrics=evaluations["new"].outputs["metrics"],
                    registry_uri=registry_uri,
                    model_name=model_name,
                    pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                    training_noise=training_noise,
                    baseline=evaluations["production"].outputs["metrics"],
                    trigger=news.outputs["trigger"],
                )
            )
    return Outputs(gate=gate.outputs["metrics"], status=news.outputs["status"])
