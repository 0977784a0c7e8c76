"""The promotion test a pipeline branches on (dsl.If): does the new model beat the one in production?"""

from kfp import dsl
from kfp.dsl import Input, Metrics

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def beats_production(
    candidate: Input[Metrics],
    registry_uri: str,
    model_name: str,
    production: Input[Metrics] = None,
) -> bool:
    """True when the candidate's transfer score is strictly higher than production's: `production`'s metrics
    when given (both measured on the same eval data), else the score the registry holds; True without one."""
    from mug.steps import decide_promotion

    verdict, reason = decide_promotion(
        candidate.metadata, registry_uri, model_name, production.metadata if production is not None else None
    )
    print(f"{'register' if verdict else 'do not register'}: {reason}")
    return verdict
