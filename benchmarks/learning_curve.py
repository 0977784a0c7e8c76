"""Transfer score against images seen: each objective trained once for `--steps`, a checkpoint every `--every`
steps, every checkpoint evaluated by `mug evaluate`'s protocol (floor, probes, 95% intervals). Writes
OUT/learning_curve.md, OUT/learning_curve.json and OUT/learning_curve.png.

The checkpoints are points on one cosine schedule, not separate runs of each length: an early point is a model in
the middle of its learning-rate decay, so it understates what a run of that length would reach. It answers "when
does this objective start to lift the encoder above its random init", not "what is the best run of N steps".

    .venv/bin/python benchmarks/learning_curve.py --objectives mug,mae --steps 2000 --every 500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml
from matplotlib.figure import Figure

from mug.data.synthetic.synth import SEMANTIC_LABELS
from mug.evaluation.evaluate import HEADLINE, TRANSFER_SCORE, EvalOptions, evaluate_checkpoint
from mug.train.config import load_train_config
from mug.train.loop import train
from mug.train.state import checkpoints


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objectives", default="mug,mae", help="comma-separated, trained one after the other")
    p.add_argument("--steps", type=int, default=2000, help="steps of each run (default: %(default)s)")
    p.add_argument("--every", type=int, default=500, help="checkpoint and evaluate every N steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--base-lr", type=float, default=1.5e-3, help="lr = base_lr x batch / 256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--train", nargs="+", default=["data/train"], help="pre-training shards")
    p.add_argument("--eval", nargs="+", default=["data/eval"], help="labelled eval shards")
    p.add_argument("--tokenizer", default="artifacts/tokenizer.json")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="further training settings (YAML values)")
    p.add_argument("--max-eval-samples", type=int, help="cap the eval samples and the digits (smoke runs)")
    p.add_argument("--out", default="runs/learning-curve")
    p.add_argument("--reuse", action="store_true", help="keep trainings and evaluations found under --out")
    args = p.parse_args(argv)
    if args.steps % args.every:
        p.error(f"--steps ({args.steps}) must be a multiple of --every ({args.every})")
    return args


def pretrain(objective: str, args: argparse.Namespace) -> Path:
    out = Path(args.out) / objective
    if not (args.reuse and (out / "summary.json").is_file()):
        extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
        overrides = {
            "data": args.train,
            "out": str(out),
            "objective": objective,
            "preset": args.preset,
            "tokenizer": args.tokenizer,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "base_lr": args.base_lr,
            "seed": args.seed,
            "ckpt_every": args.every,
            "keep_last": args.steps // args.every,  # every point of the curve is kept
            "wandb": "disabled",
        }
        train(load_train_config(overrides=overrides | extra))
    return out / "checkpoints"


def evaluate(checkpoint: Path, args: argparse.Namespace) -> dict[str, float]:
    out = checkpoint.parent.parent / "eval" / checkpoint.name
    if not (args.reuse and (out / "metrics.json").is_file()):
        evaluate_checkpoint(
            checkpoint, args.eval, out, EvalOptions(max_samples=args.max_eval_samples, seed=args.seed, progress=False)
        )
    return json.loads((out / "metrics.json").read_text())


def row(objective: str, step: int, images: int, m: dict[str, float]) -> str:
    def interval(key: str) -> str:
        return f"{m[key]:+.3f} [{m[key + '_low']:+.3f}, {m[key + '_high']:+.3f}]"

    lifts = [interval(f"lift/{HEADLINE}/{label}") for label in SEMANTIC_LABELS]
    return f"| {objective} | {step} | {images:,} | {interval(TRANSFER_SCORE)} | " + " | ".join(lifts) + " |"


def chart(points: dict[str, list[dict]], path: Path) -> None:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    for objective, series in points.items():
        x = [p["images"] for p in series]
        y = [p["metrics"][TRANSFER_SCORE] for p in series]
        low = [p["metrics"][TRANSFER_SCORE + "_low"] for p in series]
        high = [p["metrics"][TRANSFER_SCORE + "_high"] for p in series]
        ax.plot(x, y, marker="o", label=objective)
        ax.fill_between(x, low, high, alpha=0.2)
    ax.axhline(0, color="red", linewidth=1, label="random-init floor")
    ax.set_xlabel("images seen")
    ax.set_ylabel(f"{TRANSFER_SCORE} (95% interval)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points: dict[str, list[dict]] = {}
    for objective in [o.strip() for o in args.objectives.split(",") if o.strip()]:
        print(f"{objective}: training {args.steps} steps, a checkpoint every {args.every}", flush=True)
        root = pretrain(objective, args)
        points[objective] = []
        for checkpoint in checkpoints(root):
            step = int(checkpoint.name.removeprefix("step-"))
            print(f"{objective}: evaluating step {step}", flush=True)
            metrics = evaluate(checkpoint, args)
            points[objective].append({"step": step, "images": step * args.batch_size, "metrics": metrics})
    header = [f"| objective | step | images seen | {TRANSFER_SCORE} [95%] | "
              + " | ".join(f"lift {label} [95%]" for label in SEMANTIC_LABELS) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(SEMANTIC_LABELS)]  # fmt: skip
    lines = [row(o, p["step"], p["images"], p["metrics"]) for o, series in points.items() for p in series]
    table = "\n".join(header + lines) + "\n"
    (out / "learning_curve.md").write_text(table)
    (out / "learning_curve.json").write_text(json.dumps({"args": vars(args), "points": points}, indent=2) + "\n")
    chart(points, out / "learning_curve.png")
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{table}\nwrote {out}/learning_curve.md, .json and .png in {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
