"""The promotion test a pipeline branches on (dsl.If): does the new model beat the one in production?"""

from kfp import dsl
from kfp.dsl import Input, Metrics

from components.base_image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def beats_production(
    candidate: Input[Metrics],
    registry_uri: str,
    model_name: str,
    training_noise: float,
    production: Input[Metrics] = None,
) -> bool:
    """True when the model gate promotes the candidate: its transfer score is above the random-init floor and
    beats production's beyond the noise, paired image by image with `production`'s evaluation when given (both
    on the same eval data), else with the evaluation the registry kept; above the floor is enough without one.
    `training_noise`: the spread of transfer/score between re-seeded trainings, which the lead must also exceed."""
    from mug.steps import decide_promotion, evidence

    verdict, reason = decide_promotion(
        candidate=evidence(metrics=candidate.metadata, folder=candidate.path),
        registry_uri=registry_uri,
        model_name=model_name,
        baseline=evidence(metrics=production.metadata, folder=production.path) if production is not None else None,
        training_noise=training_noise,
    )
    print(f"{'register' if verdict else 'do not register'}: {reason}")
    return verdict
