"""The data gate as a pipeline step: a failed gate fails the run, naming each failed check."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Output

from components.base_image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate_data(
    data: list,
    data_revision: str,
    tokenizer: str,
    thresholds: dict,
    min_side: int,
    dataset: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Check the shards `data` with the Great Expectations gate (`thresholds`: the whole gate, {} for the shipped
    one; `min_side` 0 keeps its minimum). `dataset` is the validated shard list with its md5 and revision."""
    from mug.steps import validate

    result = validate(
        data=data,
        out_dir=dataset.path,
        report=report.path,
        revision=data_revision,
        tokenizer=tokenizer,
        thresholds=thresholds,
        min_side=min_side,
    )
    dataset.metadata.update({"shards": result["shards"], **result["lineage"]})
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
