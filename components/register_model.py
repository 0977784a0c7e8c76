"""Registration as a pipeline step: a new version of the model, traced to its data, code and run."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.base_image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    metrics: Input[Metrics],
    registry_uri: str,
    model_name: str,
    pipeline_run: str,
    registration: Output[Artifact],
    training_noise: float,
    baseline: Input[Metrics] = None,
    trigger: str = "",
):
    """Register the checkpoint with its evaluation (metrics and per-image outcomes) and lineage (data md5/revision,
    code version, the run that made it); the registry moves `candidate` to it, and `production` if the model gate
    says it beats production (`baseline`, production's evaluation on the same eval data, when given) beyond the
    eval images' noise and `training_noise`. `trigger`: what a retraining run found new (recorded in the lineage)."""
    from mug.steps import register

    result = register(
        model_dir=model.path,
        metrics=metrics.metadata,
        model_metadata=model.metadata,
        pipeline_run=pipeline_run,
        model_name=model_name,
        registry_uri=registry_uri,
        metrics_dir=metrics.path,
        baseline=baseline.metadata if baseline is not None else None,
        baseline_dir=baseline.path if baseline is not None else None,
        training_noise=training_noise,
        trigger=trigger,
    )
    registration.uri = result.model_uri
    registration.metadata.update(
        {
            "name": result.name,
            "version": result.version,
            "aliases": result.aliases,
            "promoted": result.promoted,
            "reason": result.reason,
        }
    )
    print(f"registered {result.name} v{result.version} ({', '.join(result.aliases)}): {result.reason}")
