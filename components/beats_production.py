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
    import math

    from mug.evaluation.evaluate import TRANSFER_SCORE
    from mug.registry import production_score
    from mug.steps import beats

    score = candidate.metadata.get(TRANSFER_SCORE, math.nan)
    if production is not None:
        baseline, what = production.metadata.get(TRANSFER_SCORE, math.nan), "production on the same eval data"
    else:
        registered = production_score(model_name, registry_uri or None)
        baseline = registered[1] if registered else None
        what = f"production v{registered[0]}" if registered else "production"
    verdict, reason = beats(score, baseline, what)
    print(f"{'register' if verdict else 'do not register'}: {reason}")
    return verdict
