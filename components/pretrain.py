"""Pre-training as a pipeline step: any objective, in this process, as N DDP processes through torchx, or as a
multi-node job (a Kubeflow Trainer TrainJob or a Volcano job)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.base_image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def pretrain(
    dataset: Input[Dataset],
    objective: str,
    preset: str,
    steps: int,
    batch_size: int,
    tokenizer: str,
    device: str,
    wandb: str,
    nproc: int,
    gpus: int,
    nodes: int,
    settings: dict,
    model: Output[Model],
    metrics: Output[Metrics],
    init_from: Input[Model] = None,
):
    """Train on the validated shards (`tokenizer` "" learns one from them); `settings` holds any other
    TrainConfig field (base_lr, model overrides, ...); `nproc` 0 runs one process per GPU of the `gpus` it
    holds; `nodes` > 1 runs a job of that many pods with `gpus` each: a Kubeflow Trainer TrainJob, or a Volcano
    job when compiled with MUG_MULTI_NODE=volcano. With `init_from`, continue from that model (its objective and
    preset win). `model` is the checkpoint directory; its metadata carries what a
    registered model is traced back by. `metrics`' folder keeps summary.json and the offline W&B run."""
    from mug.steps import model_metadata
    from mug.steps import pretrain as run

    chosen = {"objective": objective, "preset": preset, "steps": steps, "batch_size": batch_size}
    chosen |= {"tokenizer": tokenizer or None, "device": device, "wandb": wandb}
    summary = run(
        shards=dataset.metadata["shards"],
        model_dir=model.path,
        settings={**settings, **chosen},
        nproc=nproc,
        init_from=init_from.path if init_from is not None else None,
        logs_dir=metrics.path,
        gpus=gpus,
        nodes=nodes,
    )
    continued = init_from.metadata.get("registered", init_from.uri) if init_from is not None else ""
    model.metadata.update(model_metadata(summary=summary, dataset=dataset.metadata, init_from=continued))
    for name, value in summary["final_losses"].items():
        metrics.log_metric(f"final/{name}", value)
    metrics.log_metric("images_per_s", summary["images_per_s"])
    metrics.log_metric("seconds", summary["seconds"])
