"""The paper's 2x2 study in miniature: SimCLR, MAE, CLIP and MUG pre-trained like-for-like on the same web
shards (same encoder preset, seed, steps, batch and optimiser recipe; only the objective differs), then each
frozen encoder evaluated on the same labelled split against its random-init floor, for each of `--seeds`, and
beside a supervised ceiling (`benchmarks/ceiling.py`, `--ceiling`). Writes OUT/paradigms.md and
OUT/paradigms.json; each run lives in OUT/seed-S/OBJECTIVE.

Run from the repository root: `python benchmarks/paradigms.py --help`. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from train_step import make_batch  # benchmarks/ is on sys.path when this file runs as a script

from mug.checkpoint import load_checkpoint
from mug.data.synthetic.synth import SEMANTIC_LABELS
from mug.evaluation.evaluate import EvalOptions, evaluate_checkpoint
from mug.evaluation.significance import OUTCOMES, read_outcomes, summarize
from mug.models import Objective, build_model
from mug.tokenizer import CaptionTokenizer
from mug.train.config import TrainConfig, load_train_config
from mug.train.loop import train

# (modality, kind of objective): the paper's grid, in its reading order.
QUADRANTS = {
    "simclr": ("single-modal", "discriminative"),
    "mae": ("single-modal", "generative"),
    "clip": ("multi-modal", "discriminative"),
    "mug": ("multi-modal", "generative"),
}
# 800 steps: where MUG-tiny first clears its random-init floor on the sample corpus (300 does not; docs/benchmarks.md).
DEFAULT_STEPS, DEFAULT_BATCH = 800, 64
# MAE's recipe except base_lr: MAE's 1.5e-4 barely moves a model in a few hundred steps (lr = base_lr x batch / 256
# = 3.75e-5 at batch 64); this one trains all four stably at this scale (short runs, docs/benchmarks.md).
DEFAULT_BASE_LR = 1.5e-3
TOKENIZER = Path("artifacts/tokenizer.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every objective gets the same seed, steps, batch, base_lr, 5%% linear warm-up, cosine decay and weight "
        "decay 0.05 (AdamW 0.9/0.95), so all see the same steps x batch images (with --equal-flops: the same training "
        "FLOPs instead). Their compute differs by design: "
        "SimCLR encodes two augmented views of each image, MAE and MUG encode only the 25%% of patches the 75%% mask "
        "leaves, CLIP also runs a text encoder and MUG a caption decoder; the table reports wall-clock seconds, "
        "images/s and forward GFLOP per image of each.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--preset", default="tiny", help="model preset shared by all four (tiny, small, base)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimiser steps per objective")
    p.add_argument(
        "--equal-flops",
        action="store_true",
        help="give MUG --steps and cut or extend each other objective's steps so its training FLOPs match MUG's",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="images per step (SimCLR: two views each)")
    p.add_argument("--base-lr", type=float, default=DEFAULT_BASE_LR, help="lr = base_lr x batch / 256, for all four")
    p.add_argument("--seeds", default="0", help="comma-separated: each seed trains and evaluates all objectives")
    p.add_argument("--ceiling", help="a benchmarks/ceiling.py --out folder: its supervised model's probes as ceilings")
    p.add_argument("--objectives", default="simclr,mae,clip,mug", help="comma-separated subset of the four")
    p.add_argument("--train", nargs="+", default=["data/train"], help="pre-training shards")
    p.add_argument("--eval", nargs="+", default=["data/eval"], help="labelled evaluation shards")
    p.add_argument("--out", default="runs/paradigms", help="one folder per objective, and the tables, go here")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--num-workers", type=int, default=1, help="data-loader processes while training")
    p.add_argument("--max-eval-samples", type=int, default=None, help="cap the eval samples and the digits")
    p.add_argument("--device", default="cpu", help="torch device for training and evaluation")
    p.add_argument("--reuse", action="store_true", help="keep a finished training or evaluation found under --out")
    args = p.parse_args(argv)
    args.objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    unknown = [o for o in args.objectives if o not in QUADRANTS]
    if unknown or not args.objectives:
        p.error(f"--objectives takes some of {', '.join(QUADRANTS)}, got {', '.join(unknown) or 'none'}")
    args.objectives = [o for o in QUADRANTS if o in args.objectives]  # 2x2 order
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    return args


def run_dir(args: argparse.Namespace, seed: int, objective: str) -> Path:
    return Path(args.out) / f"seed-{seed}" / objective


def train_config(objective: str, seed: int, steps: int, args: argparse.Namespace) -> TrainConfig:
    """The one recipe every objective shares; only the objective (and, with --equal-flops, the steps) differ."""
    return load_train_config(
        overrides={
            "data": args.train,
            "out": str(run_dir(args, seed, objective)),
            "objective": objective,
            "preset": args.preset,
            "tokenizer": str(TOKENIZER) if TOKENIZER.is_file() else None,
            "steps": steps,
            "batch_size": args.batch_size,
            "base_lr": args.base_lr,
            "seed": seed,
            "device": args.device,
            "num_workers": args.num_workers,
            "ckpt_every": steps,  # no intermediate checkpoints: only the final model is written
            "log_every": max(1, steps // 30),
            "wandb": "disabled",
        }
    )


def pretrain(objective: str, seed: int, steps: int, args: argparse.Namespace) -> dict:
    """Train one objective (or reuse a finished run); its seconds, images/s and losses."""
    out = run_dir(args, seed, objective)
    if not (args.reuse and (out / "summary.json").is_file()):
        train(train_config(objective, seed, steps, args))
    summary = json.loads((out / "summary.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]
    return {
        "seconds": summary["seconds"],
        "steps": summary["steps"],
        "images_per_s": summary["steps"] * args.batch_size / summary["seconds"],  # whole run, data loading included
        "first_loss": history[0]["loss"] if history else None,
        "first_loss_step": history[0]["step"] if history else None,
        "final_losses": summary["final_losses"],
        "skipped": summary["skipped"],
    }


def forward_gflops_per_image(model: Objective, batch_size: int) -> float:
    """Model FLOPs of one training-mode forward (mask and all) on a random batch, per image."""
    model.train()
    batch = make_batch(model, batch_size, "cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch)
    return counter.get_total_flops() / batch_size / 1e9


def untrained_model(objective: str, args: argparse.Namespace) -> Objective:
    """The model `train` would build for `objective`, with the shared tokenizer's vocabulary (the FLOPs of
    MUG's vocabulary head and CLIP's text tower depend on it)."""
    cfg = train_config(objective, 0, args.steps, args)
    model = build_model(cfg.model_config())
    if "tokens" in model.inputs and TOKENIZER.is_file():
        tokenizer = CaptionTokenizer.from_file(TOKENIZER)
        model = build_model(cfg.model_config(tokenizer.vocab_size, tokenizer.pad_id))
    return model


def steps_per_objective(args: argparse.Namespace) -> dict[str, int]:
    """--steps for every objective; with --equal-flops, MUG keeps --steps and each other objective gets the steps
    at which 3 x forward FLOPs x images seen equals MUG's (SimCLR's two full views and CLIP's text tower cost
    more per image than the masked objectives, so they see fewer images)."""
    if not args.equal_flops:
        return dict.fromkeys(args.objectives, args.steps)
    batch = min(args.batch_size, 16)
    reference = forward_gflops_per_image(untrained_model("mug", args), batch)
    return {
        o: max(1, round(args.steps * reference / forward_gflops_per_image(untrained_model(o, args), batch)))
        for o in args.objectives
    }


def evaluate(
    objective: str, seed: int, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """The frozen encoder's metrics, the majority-class rate of each task's test half (from the confusion
    matrices: their rows are the true labels) and the task names in the evaluation's order. Every seed's model
    is probed on the same split (seed 0's), so seeds differ only in their training."""
    run = run_dir(args, seed, objective)
    out = run / "eval"
    if not (args.reuse and (out / "metrics.json").is_file()):
        opts = EvalOptions(max_samples=args.max_eval_samples, device=args.device, seed=0)
        evaluate_checkpoint(run / "model", args.eval, out, opts)
    metrics = json.loads((out / "metrics.json").read_text()) | semantic_score(out)
    chance = {}
    confusion = json.loads((out / "confusion.json").read_text())  # keeps the evaluation's label order
    for name, cm in confusion.items():
        if name.startswith("probe_cls/") or name == "digits/probe_cls":
            rows = [sum(row) for row in cm["matrix"]]
            chance["digits" if name.startswith("digits") else name.split("/", 1)[1]] = max(rows) / sum(rows)
    return metrics, chance, list(confusion)


SEMANTIC = "transfer/semantic"  # transfer/score on the semantic labels alone: what the nuisances cannot move


def semantic_score(eval_dir: Path) -> dict[str, float]:
    """transfer/score and its interval over the semantic labels only, from the evaluation's per-image outcomes."""
    outcomes = read_outcomes(eval_dir / OUTCOMES) or {}
    semantic = {task: outcome for task, outcome in outcomes.items() if task in SEMANTIC_LABELS}
    if not semantic:
        return {}
    summary = summarize(semantic)
    return {SEMANTIC + end: summary["score" + end] for end in ("", "_low", "_high")}


def task_columns(runs: dict) -> list[str]:
    """Label names in the order the evaluation found them, then the digits."""
    labels = [k.split("/", 1)[1] for r in runs.values() for k in r["tasks"] if k.startswith("probe_cls/")]
    return list(dict.fromkeys(labels)) + ["digits"]


def markdown_table(header: list[str], rows: list[list], higher_is_better: list[bool | None], fmt) -> str:
    """Cells formatted by `fmt`; the best value of each column with a direction in bold (ties all bold)."""
    best = []
    for j, direction in enumerate(higher_is_better):
        values = [r[j] for r in rows if isinstance(r[j], int | float)]
        best.append(None if direction is None or not values else (max if direction else min)(values))
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|",
    ]
    for r in rows:
        cells = []
        for j, value in enumerate(r):
            text = fmt(value, j)
            cells.append(f"**{text}**" if best[j] is not None and value == best[j] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_cell(metrics: dict, name: str = "transfer/score") -> str:
    score, low, high = (metrics.get(f"{name}{end}") for end in ("", "_low", "_high"))
    return "-" if score is None else f"{score:+.3f} [{low:+.3f}, {high:+.3f}]"


def task_cell(metrics: dict, task: str) -> str:
    """CLS probe accuracy, its floor and the lift over the floor in points with its 95% interval."""
    name = "digits/probe_cls" if task == "digits" else f"probe_cls/{task}"
    accuracy, floor = metrics.get(name), metrics.get(f"floor/{name}")
    lift = [metrics.get(f"lift/{name}{end}") for end in ("", "_low", "_high")]
    if accuracy is None or floor is None or None in lift:
        return "-"
    points = [f"{100 * value:+.1f}" for value in lift]
    return f"{100 * accuracy:.1f} (floor {100 * floor:.1f}): {points[0]} [{points[1]}, {points[2]}]"


def against_floor_and_ceiling(results: dict, ceiling: dict | None, chance: dict, tasks: list[str]) -> str:
    header = (
        f"| objective | seed | transfer/score [95%] | {', '.join(SEMANTIC_LABELS)} only | " + " | ".join(tasks) + " |"
    )
    lines = [header, "|---|---:|---|---|" + "---|" * len(tasks)]

    def row(name: str, seed, metrics: dict) -> str:
        scores = f"{score_cell(metrics)} | {score_cell(metrics, SEMANTIC)}"
        return f"| {name} | {seed} | {scores} | " + " | ".join(task_cell(metrics, t) for t in tasks) + " |"

    for objective in QUADRANTS:
        lines += [
            row(objective, seed, runs[objective]["metrics"]) for seed, runs in results.items() if objective in runs
        ]
    if ceiling is not None:
        lines.append(row("supervised ceiling", ceiling["args"]["seed"], ceiling["metrics"]))
    lines.append(
        "| majority class | | | | " + " | ".join(f"{100 * chance[t]:.1f}" if t in chance else "-" for t in tasks) + " |"
    )
    return (
        "### Against the random-init floor (CLS linear probe: accuracy % (floor): lift in points [95% interval])\n\n"
        + "\n".join(lines)
    )


def two_by_two(results: dict, name: str = "transfer/score", what: str = "") -> str:
    def cell(objective: str) -> str:
        scores = [
            f"{score_cell(runs[objective]['metrics'], name)} (seed {seed})"
            for seed, runs in results.items()
            if objective in runs
        ]
        return f"{objective}: " + "<br>".join(scores) if scores else "-"

    return (
        f"### The 2x2 of transfer/score{what} (0 = the random-init floor; 95% interval)\n\n"
        "| | discriminative | generative |\n|---|---|---|\n"
        f"| single-modal | {cell('simclr')} | {cell('mae')} |\n| multi-modal | {cell('clip')} | {cell('mug')} |"
    )


def compute_table(runs: dict, args: argparse.Namespace) -> str:
    def cell(value, column: int) -> str:
        if value is None:
            return "-"
        return [str, str, str, "{:.0f}".format, "{:.1f}".format, "{:.2f}".format, "{:.1f}".format, str][column](value)

    header = [
        "objective",
        "quadrant",
        "steps",
        "train s",
        "images/s",
        "fwd GFLOP/image",
        "≈ train TFLOP",
        "loss (first -> final)",
    ]
    rows = []
    for o, r in runs.items():
        t = r["train"]
        tflop = 3 * r["gflops"] * t["steps"] * args.batch_size / 1e3
        loss = f"{t['first_loss']:.3f} (step {t['first_loss_step']}) -> {t['final_losses']['loss']:.3f}"
        parts = {k: v for k, v in t["final_losses"].items() if k.startswith("loss_")}
        if len(parts) > 1:
            loss += " (" + ", ".join(f"{k[5:]} {v:.3f}" for k, v in sorted(parts.items())) + ")"
        rows.append([o, " ".join(QUADRANTS[o]), t["steps"], t["seconds"], t["images_per_s"], r["gflops"], tflop, loss])
    return "### Compute (train TFLOP ≈ 3 x forward x images seen)\n\n" + markdown_table(
        header, rows, [None, None, None, False, True, False, False, None], cell
    )


def render(results: dict, chance: dict, ceiling: dict | None, args: argparse.Namespace, settings: dict) -> str:
    tasks = task_columns(next(iter(results.values())))
    first = next(iter(results))
    steps = settings["steps"]
    counts = sorted(set(steps.values()))
    budget = (
        f"{counts[0]} steps x batch {args.batch_size} = {counts[0] * args.batch_size} images seen each"
        if len(counts) == 1
        else "equal training FLOPs, steps x batch "
        + ", ".join(f"{o} {n} x {args.batch_size}" for o, n in steps.items())
    )
    intro = (
        f"Paradigms, preset {args.preset}: {budget}, base_lr {args.base_lr:g} (lr {settings['lr']:.2e}), "
        f"seeds {', '.join(map(str, results))}, {args.threads} threads; held-out images per task: "
        f"{settings['test_sizes']}. Each model's floor is its own architecture at random init."
    )
    semantic = two_by_two(results, SEMANTIC, f" on {', '.join(SEMANTIC_LABELS)} alone")
    parts = [intro, against_floor_and_ceiling(results, ceiling, chance, tasks), two_by_two(results), semantic]
    parts.append(f"Seed {first}:\n\n" + compute_table(results[first], args))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict] = {}
    chance: dict[str, float] = {}
    total = len(args.seeds) * len(args.objectives)
    steps = steps_per_objective(args)
    if args.equal_flops:
        print("steps at MUG's training FLOPs: " + ", ".join(f"{o} {n}" for o, n in steps.items()), flush=True)
    for seed in args.seeds:
        results[seed] = {}
        for objective in args.objectives:
            tag = f"[seed {seed}, {len(results[seed]) + 1}/{len(args.objectives)}] {objective}"
            print(f"{tag} ({', '.join(QUADRANTS[objective])}): pre-training", flush=True)
            trained = pretrain(objective, seed, steps[objective], args)
            print(f"{tag}: evaluating the frozen encoder", flush=True)
            metrics, chance_, tasks = evaluate(objective, seed, args)
            chance.update(chance_)
            model, _, _ = load_checkpoint(run_dir(args, seed, objective) / "model", "cpu")
            gflops = forward_gflops_per_image(model, min(args.batch_size, 16))
            results[seed][objective] = {
                "quadrant": QUADRANTS[objective], "train": trained, "gflops": gflops, "metrics": metrics, "tasks": tasks
            }  # fmt: skip
            print(
                f"{tag}: trained in {trained['seconds']:.0f} s ({trained['images_per_s']:.1f} images/s), final loss "
                f"{trained['final_losses']['loss']:.4f}, transfer/score {score_cell(metrics)}; "
                f"{time.perf_counter() - started:.0f} s so far ({total} runs in all)",
                flush=True,
            )
    ceiling = json.loads((Path(args.ceiling) / "ceiling.json").read_text()) if args.ceiling else None
    if ceiling is not None:
        ceiling["metrics"] |= semantic_score(Path(args.ceiling) / "eval")

    first = run_dir(args, args.seeds[0], args.objectives[0])
    confusion = json.loads((first / "eval" / "confusion.json").read_text())
    test_sizes = {
        ("digits" if k.startswith("digits") else k.split("/", 1)[1]): sum(map(sum, v["matrix"]))
        for k, v in confusion.items()
        if k.startswith("probe_cls/") or k == "digits/probe_cls"
    }
    settings = {
        "preset": args.preset,
        "steps": steps,
        "batch_size": args.batch_size,
        "images_seen": {o: n * args.batch_size for o, n in steps.items()},
        "base_lr": args.base_lr,
        "lr": args.base_lr * args.batch_size / 256,
        "seeds": args.seeds,
        "threads": args.threads,
        "num_workers": args.num_workers,
        "train": args.train,
        "eval": args.eval,
        "max_eval_samples": args.max_eval_samples,
        "ceiling": args.ceiling,
        "test_sizes": ", ".join(f"{k} {v}" for k, v in test_sizes.items()),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, python {platform.python_version()}",
    }
    table = render(results, chance, ceiling, args, settings)
    seconds = time.perf_counter() - started
    (out / "paradigms.md").write_text(table)
    dump = {"settings": settings, "chance": chance, "seeds": results, "ceiling": ceiling, "total_seconds": seconds}
    (out / "paradigms.json").write_text(json.dumps(dump, indent=2))
    print("\n" + table)
    print(f"wrote {out / 'paradigms.md'} and {out / 'paradigms.json'}; total wall time {seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
