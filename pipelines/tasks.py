"""The tasks every pipeline shares, created and placed one way: the data gate, pre-training, evaluation."""

from kfp.dsl import PipelineTask

from components import evaluate_checkpoint, pretrain, validate_data
from pipelines.platform import launches_jobs, on_gpus, step


def gate(**arguments) -> PipelineTask:
    """validate_data, uncached."""
    return step(validate_data(**arguments))


def training(gpus, **arguments) -> PipelineTask:
    """pretrain on `gpus` GPUs, uncached, able to submit a multi-node job."""
    return launches_jobs(on_gpus(step(pretrain(gpus=gpus, **arguments)), gpus))


def evaluation(gpus, **arguments) -> PipelineTask:
    """evaluate_checkpoint on `gpus` GPUs, uncached."""
    return on_gpus(step(evaluate_checkpoint(gpus=gpus, **arguments)), gpus)
