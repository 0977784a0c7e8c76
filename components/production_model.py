"""The model in production, fetched from the registry as a Model artifact (what retraining starts from)."""

from kfp import dsl
from kfp.dsl import Model, Output

from components.base_image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def production_model(registry_uri: str, model_name: str, model: Output[Model]):
    """Download the version holding the `production` alias; fails when there is none."""
    from mug.steps import fetch_production

    _, version, score = fetch_production(dst=model.path, name=model_name, uri=registry_uri or None)
    model.metadata.update({"registered": f"{model_name} v{version}", "version": version, "transfer/score": score})
