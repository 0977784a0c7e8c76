"""`mug pretrain`: train an objective on web shards here, or launch the same run through torchx."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path

from mug.train.config import TrainConfig
from mug.train.launch_spec import SCHEDULERS

DATA_LINEAGE = "data.json"  # in OUT, for --data by DVC address: the commit and md5 the run read
# What a None default of these fields means.
_NO_DEFAULT = {
    "warmup_steps": "5%% of --steps",
    "epoch_samples": "one pass over the shards",
    "tokenizer": "one trained on the shards' captions",
}
# Flags that set a TrainConfig field directly (dest == field name); anything else goes through --set.
_FIELDS = (
    ("--objective", str, "mae, simclr, clip or mug"),
    ("--preset", str, "model size: tiny, small or base"),
    ("--steps", int, "optimiser steps"),
    ("--batch-size", int, "samples per process and micro-step"),
    ("--accum-steps", int, "micro-steps per optimiser step (mae, mug; simclr and clip need the whole batch at once)"),
    ("--base-lr", float, "lr = base_lr x global batch / 256"),
    ("--warmup-steps", int, "linear warm-up steps"),
    ("--precision", str, "fp32, bf16 (autocast, CPU or GPU) or fp16 (GPU, with a grad scaler)"),
    ("--device", str, "auto (a GPU when there is one), cpu, cuda or cuda:N"),
    ("--num-workers", int, "data-loading processes per training process"),
    ("--epoch-samples", int, "samples per epoch over all ranks (set it under DDP and for long runs)"),
    ("--ckpt-every", int, "checkpoint every K steps and at the end"),
    ("--keep-last", int, "training checkpoints kept"),
    ("--log-every", int, "log losses, lr and images/s every K steps"),
    ("--sample-every", int, "log a reconstruction and a generated caption every K steps to W&B (0: never)"),
    ("--tokenizer", str, "tokenizer.json for text objectives"),
    ("--seed", int, "seed of weights, masks and data order"),
    ("--wandb", str, "W&B mode: offline (`wandb sync` later), online or disabled"),
)


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pre-train an encoder with mae, simclr, clip or mug on web shards",
        description="Train one of the four objectives on img2dataset shards. Settings come from the defaults, "
        "then --config FILE.yaml, then the flags and --set KEY=VALUE (the later wins). Checkpoints go to "
        "OUT/checkpoints/step-N (resumable with --resume), the final model to OUT/model, the loss history to "
        "OUT/history.jsonl and the run's figures to OUT/summary.json. With --nproc N or another --scheduler the "
        "run is launched: through torchx (torchrun here, a Volcano job on Kubernetes) or as a Kubeflow Trainer "
        "TrainJob (on the cluster, or through the Kubeflow SDK's local-process backend).",
        epilog="example: mug pretrain --objective mug --preset tiny --data 'data/train/{00000..00004}.tar' "
        "--steps 200 --out runs/mug-tiny",
    )
    p.add_argument(
        "--data",
        nargs="+",
        help="shard paths, folders, brace patterns, pipe: or http(s) URLs, or DVC addresses dvc://REPO@REV#PATH "
        "(fetched from the revision's DVC remote; OUT/data.json records the commit and md5)",
    )
    p.add_argument("--out", help="run directory (default: runs/pretrain)")
    p.add_argument("--config", help="YAML/JSON file of settings (any field of mug.train.config.TrainConfig)")
    defaults = TrainConfig()
    for flag, kind, text in _FIELDS:
        field = flag[2:].replace("-", "_")
        default = _NO_DEFAULT.get(field, getattr(defaults, field))
        p.add_argument(flag, type=kind, help=f"{text} (default: {default})")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument(
        "--crop-on-device",
        action="store_true",
        default=None,
        help="loader workers only decode; the GPU crops, resizes and flips (a quarter more images/s per worker at "
        "224 px; not for simclr). --set canvas_size=N if the shards' images are larger than 256 px",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting, e.g. --set clip_grad=0 --set model.encoder.depth=4 --set model.objective.w_cap=0.5",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")

    launch = p.add_argument_group(
        "launching",
        "torchx (local_cwd: torchrun here; kubernetes: a Volcano job) or Kubeflow Trainer (trainjob: a TrainJob; "
        "trainjob-local: the Kubeflow SDK's local-process backend)",
    )
    launch.add_argument("--nproc", type=int, default=1, help="processes per node (DDP; gloo on CPU, nccl on GPU)")
    launch.add_argument("--scheduler", default="local_cwd", choices=SCHEDULERS, help="where (default: local_cwd)")
    launch.add_argument(
        "--runtime", default="torch-distributed", help="Trainer runtime of the TrainJob (default: torch-distributed)"
    )
    launch.add_argument("--image", help="container image (kubernetes, trainjob)")
    launch.add_argument("--nodes", type=int, default=1, help="nodes (kubernetes, trainjob; default: 1)")
    launch.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (kubernetes, trainjob)")
    launch.add_argument("--queue", default="default", help="Volcano queue (kubernetes)")
    launch.add_argument("--namespace", default="default", help="Kubernetes namespace")
    launch.add_argument("--cpus-per-node", type=int, default=8, help="CPUs per pod (kubernetes, trainjob; default: 8)")
    launch.add_argument(
        "--memory-gb", type=int, default=32, help="memory per pod in GB (kubernetes, trainjob; default: 32)"
    )
    launch.add_argument("--shm-size", help="cap on the pod's memory-backed /dev/shm, e.g. 16Gi (default: none)")
    launch.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="SPEC",
        help="a volume for the pods, e.g. type=volume,src=PVC,dst=/mnt/runs (kubernetes; put --out on it)",
    )
    launch.add_argument(
        "--env-secret",
        action="append",
        default=[],
        metavar="SECRET",
        help="Kubernetes Secret whose keys become environment variables (kubernetes), or one key of it as "
        "SECRET:KEY=VAR (trainjob), e.g. wandb:api-key=WANDB_API_KEY",
    )
    launch.add_argument(
        "--dryrun", action="store_true", help="print the Volcano job or TrainJob that would be submitted, and stop"
    )
    p.set_defaults(func=run)


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    from mug.config import parse_overrides
    from mug.train.config import load_train_config

    overrides = parse_overrides(args.set)
    for name in ["data", "out", "compile", "crop_on_device"] + [flag[2:].replace("-", "_") for flag, _, _ in _FIELDS]:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    return load_train_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = train_config_from_args(args)
    launched = "WORLD_SIZE" in os.environ  # we are a worker of a torchrun/torchx launch
    if not launched and (args.nproc > 1 or args.scheduler != "local_cwd" or args.dryrun):
        from mug.train.launch import launch, pretrain_argv
        from mug.train.launch_spec import LaunchSpec

        spec = LaunchSpec(
            scheduler=args.scheduler,
            nproc_per_node=args.nproc,
            nodes=args.nodes,
            image=args.image,
            gpus_per_node=args.gpus_per_node,
            queue=args.queue,
            namespace=args.namespace,
            cpus_per_node=args.cpus_per_node,
            memory_gb=args.memory_gb,
            shm_size=args.shm_size,
            env_secrets=args.env_secret,
            mounts=args.mount,
            runtime=args.runtime,
            env={"WANDB_MODE": os.environ["WANDB_MODE"]} if "WANDB_MODE" in os.environ else {},
        )
        result = launch(pretrain_argv(cfg, args.resume), spec, dryrun=args.dryrun)
        if isinstance(result, str):
            print(result)
            return 0
        return result

    from mug.data.dvc_source import materialize
    from mug.train.loop import train

    source = materialize(cfg.data)
    result = train(dataclasses.replace(cfg, data=source.shards), resume=args.resume)
    if int(os.environ.get("RANK", 0)) == 0:
        if source.lineage:
            (Path(cfg.out) / DATA_LINEAGE).write_text(json.dumps(source.lineage, indent=2) + "\n")
            print(source.describe())
        losses = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.final_losses.items()))
        print(f"trained {cfg.objective}/{cfg.preset} for {result.steps} steps: {losses}")
        print(f"{result.images_per_s:.1f} images/s; skipped samples: {result.skipped or 'none'}")
        print(f"model: {result.model_dir}")
    return 0
