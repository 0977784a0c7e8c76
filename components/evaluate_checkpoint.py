"""Transfer evaluation as a pipeline step: metrics, a confusion matrix for the UI, and the standalone report."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Input, Metrics, Model, Output

from components.base_image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_checkpoint(
    model: Input[Model],
    data: list,
    batch_size: int,
    max_samples: int,
    device: str,
    gpus: int,
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
):
    """Evaluate the frozen encoder on the eval shards `data` (`max_samples` 0: all). `metrics` holds every
    number (metrics.json and confusion.json sit in its folder); `confusion` the shape probe's matrix. `gpus`
    is the task's accelerator limit (0: evaluate on the CPU)."""
    from mug.steps import evaluate

    values, headline = evaluate(
        checkpoint_dir=model.path,
        data=data,
        out_dir=metrics.path,
        report=report.path,
        batch_size=batch_size,
        max_samples=max_samples,
        device=device,
        gpus=gpus,
    )
    for name, value in values.items():
        metrics.log_metric(name, value)
    metrics.metadata["objective"] = model.metadata.get("objective", "")
    if headline is not None:
        confusion.log_confusion_matrix(headline["labels"], headline["matrix"])
        confusion.metadata["classifier"] = headline["name"]
