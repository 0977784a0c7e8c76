"""`mug sweep`: search MUG's base_lr and loss weights for the best transfer/score, here or as a Katib Experiment."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_command(sub: argparse._SubParsersAction) -> None:
    from mug.sweep import SPACE

    space = ", ".join(f"{name} {kind} [{low:g}, {high:g}]" for name, (kind, low, high) in SPACE.items())
    sweep = sub.add_parser(
        "sweep",
        help="search MUG's base_lr, w_rec and w_cap for the best transfer/score (locally or with Katib)",
        description=f"Random search over {space}; each trial pre-trains MUG and evaluates it, and the score is "
        "transfer/score. `local` runs the trials here, one after another; `render` prints the Katib Experiment "
        "(built by the Kubeflow SDK's optimizer, each trial a TrainJob) and `submit` creates it.",
    )
    actions = sweep.add_subparsers(dest="action", required=True, metavar="ACTION")
    local = actions.add_parser("local", help="run the trials here; write trials.json and best_settings.json")
    _add_trial_arguments(local)
    local.add_argument("--out", default="runs/sweep", help="trial folders and results (default: %(default)s)")
    local.set_defaults(func=run_local)
    for name, about in (("render", "print the Katib Experiment as YAML"), ("submit", "create it on the cluster")):
        cluster = actions.add_parser(name, help=about)
        _add_trial_arguments(cluster)
        cluster.add_argument("--image", required=True, help="the project's image, which every trial runs")
        cluster.add_argument("--namespace", default="default", help="Kubernetes namespace (default: %(default)s)")
        cluster.add_argument("--parallel", type=int, default=2, help="trials at a time (default: %(default)s)")
        cluster.add_argument("--gpus", type=int, default=1, help="GPUs per trial (default: %(default)s)")
        cluster.add_argument(
            "--runtime", default="torch-distributed", help="Trainer runtime of the trials (default: %(default)s)"
        )
        cluster.set_defaults(func=run_cluster, record=name == "render")


def _add_trial_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=4, help="number of trials (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random search (default: %(default)s)")
    parser.add_argument("--preset", default="tiny", help="model preset (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per trial (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--data", nargs="+", default=["data/train"], help="training shards (default: data/train)")
    parser.add_argument("--eval-data", nargs="+", default=["data/eval"], help="eval shards (default: data/eval)")
    parser.add_argument("--tokenizer", default="artifacts/tokenizer.json", help="(default: %(default)s)")
    parser.add_argument("--eval-max-samples", type=int, default=0, help="read at most this many eval samples (0: all)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any other setting, e.g. --set seed=1"
    )


def _fixed(args: argparse.Namespace) -> dict:
    """The arguments every trial shares."""
    from mug.config import parse_overrides
    from mug.errors import UserError

    for flag in ("trials", "steps", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.eval_max_samples < 0:
        raise UserError(f"--eval-max-samples must be 0 (all) or more, got {args.eval_max_samples}")
    settings = parse_overrides(args.set) | {"objective": "mug", "preset": args.preset, "steps": args.steps}
    settings |= {"batch_size": args.batch_size, "tokenizer": args.tokenizer}
    return {
        "data": args.data,
        "eval_data": args.eval_data,
        "settings": settings,
        "eval_max_samples": args.eval_max_samples,
    }


def run_local(args: argparse.Namespace) -> None:
    from mug.sweep import BEST, TRIALS, table
    from mug.sweep import run_local as sweep

    out = Path(args.out)
    rows = sweep(_fixed(args), args.trials, args.seed, out)
    print(table(rows))
    print(f"trials: {out / TRIALS}; the best trial's settings: {out / BEST}, for the pipelines as")
    print(f'  mug pipelines run-local mug-pretrain --param settings="$(cat {out / BEST})"')


def run_cluster(args: argparse.Namespace) -> None:
    import yaml

    from mug.sweep import experiment

    result = experiment(
        _fixed(args),
        args.trials,
        args.parallel,
        args.seed,
        image=args.image,
        namespace=args.namespace,
        runtime=args.runtime,
        gpus=args.gpus,
        record=args.record,
    )
    if args.record:
        print(yaml.safe_dump(result, sort_keys=False), end="")
        return
    print(f"created Katib Experiment {args.namespace}/{result}: follow it with kubectl -n {args.namespace} get "
          f"experiment {result}; its best trial: kubectl -n {args.namespace} get experiment {result} -o "
          f"jsonpath='{{.status.currentOptimalTrial}}'")  # fmt: skip
