"""The retraining schedule's first decision: is there anything new since production (data or code)?"""

from kfp import dsl
from kfp.dsl import Dataset, Input, OutputPath

from components.base_image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def whats_new(
    dataset: Input[Dataset],
    registry_uri: str,
    model_name: str,
    force: bool,
    status: OutputPath(str),
    trigger: OutputPath(str),
) -> bool:
    """Compare the validated data's md5 and this image's code version with the production version's lineage:
    False when neither changed (unless `force`), with a one-line `status`; `trigger` names what changed, for the
    new version's lineage. (The verdict is the single return value: kfp.local cannot branch on a named output.)"""
    from mug.changes import since_production

    change = since_production(data=dataset.metadata, name=model_name, uri=registry_uri or None, force=force)
    print(change.status)
    for path, text in ((status, change.status), (trigger, change.trigger)):
        with open(path, "w") as f:
            f.write(text)
    return change.retrain
