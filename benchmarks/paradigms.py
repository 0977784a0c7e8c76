"""The paper's 2x2 study in miniature: SimCLR, MAE, CLIP and MUG pre-trained like-for-like on the same web
shards (same encoder preset, seed, steps, batch and optimiser recipe; only the objective differs), then each
frozen encoder evaluated on the same labelled split. Writes OUT/paradigms.md and OUT/paradigms.json.

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
from mug.evaluation.evaluate import EvalOptions, evaluate_checkpoint
from mug.train.config import load_train_config
from mug.train.loop import train

# (modality, kind of objective): the paper's grid, in its reading order.
QUADRANTS = {
    "simclr": ("single-modal", "discriminative"),
    "mae": ("single-modal", "generative"),
    "clip": ("multi-modal", "discriminative"),
    "mug": ("multi-modal", "generative"),
}
# Sized so that 4 trainings and 4 evaluations of the tiny preset take ~15 minutes on 2 quiet CPU cores (measured
# 14.7), leaving room under 30 when other jobs share them.
DEFAULT_STEPS, DEFAULT_BATCH = 300, 64
# MAE's recipe except base_lr: MAE's 1.5e-4 barely moves a model in a few hundred steps (lr = base_lr x batch / 256
# = 3.75e-5 at batch 64); this one trains all four stably at this scale (short runs, docs/benchmarks.md).
DEFAULT_BASE_LR = 1.5e-3
TOKENIZER = Path("artifacts/tokenizer.json")
ACCURACY_TABLES = (
    ("Linear probe, CLS token", "probe_cls"),
    ("Linear probe, mean of patch tokens", "probe_mean"),
    ("kNN (k = 20, cosine), CLS token", "knn_cls"),
    ("kNN (k = 20, cosine), mean of patch tokens", "knn_mean"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every objective gets the same seed, steps, batch, base_lr, 5%% linear warm-up, cosine decay and weight "
        "decay 0.05 (AdamW 0.9/0.95), so all see the same steps x batch images. Their compute differs by design: "
        "SimCLR encodes two augmented views of each image, MAE and MUG encode only the 25%% of patches the 75%% mask "
        "leaves, CLIP also runs a text encoder and MUG a caption decoder; the table reports wall-clock seconds, "
        "images/s and forward GFLOP per image of each.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--preset", default="tiny", help="model preset shared by all four (tiny, small, base)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimiser steps per objective")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="images per step (SimCLR: two views each)")
    p.add_argument("--base-lr", type=float, default=DEFAULT_BASE_LR, help="lr = base_lr x batch / 256, for all four")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objectives", default="simclr,mae,clip,mug", help="comma-separated subset of the four")
    p.add_argument("--train", nargs="+", default=["data/train/{00000..00002}.tar"], help="pre-training shards")
    p.add_argument("--eval", nargs="+", default=["data/eval/00000.tar"], help="labelled evaluation shards")
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
    return args


def pretrain(objective: str, args: argparse.Namespace) -> dict:
    """Train one objective (or reuse a finished run); its seconds, images/s and losses."""
    out = Path(args.out) / objective
    if not (args.reuse and (out / "summary.json").is_file()):
        cfg = load_train_config(
            overrides={
                "data": args.train,
                "out": str(out),
                "objective": objective,
                "preset": args.preset,
                "tokenizer": str(TOKENIZER) if TOKENIZER.is_file() else None,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "base_lr": args.base_lr,
                "seed": args.seed,
                "device": args.device,
                "num_workers": args.num_workers,
                "ckpt_every": args.steps,  # no intermediate checkpoints: only the final model is written
                "log_every": max(1, args.steps // 30),
                "wandb": "disabled",
            }
        )
        train(cfg)
    summary = json.loads((out / "summary.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]
    return {
        "seconds": summary["seconds"],
        "images_per_s": summary["steps"] * args.batch_size / summary["seconds"],  # whole run, data loading included
        "first_loss": history[0]["loss"] if history else None,
        "first_loss_step": history[0]["step"] if history else None,
        "final_losses": summary["final_losses"],
        "skipped": summary["skipped"],
    }


def forward_gflops_per_image(model_dir: Path, batch_size: int) -> float:
    """Model FLOPs of one training-mode forward (mask and all) on a random batch, per image."""
    model, _, _ = load_checkpoint(model_dir, "cpu")
    model.train()
    batch = make_batch(model, batch_size, "cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch)
    return counter.get_total_flops() / batch_size / 1e9


def evaluate(objective: str, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """The frozen encoder's metrics, the majority-class rate of each task's test half (from the confusion
    matrices: their rows are the true labels) and the task names in the evaluation's order."""
    run = Path(args.out) / objective
    out = run / "eval"
    if not (args.reuse and (out / "metrics.json").is_file()):
        opts = EvalOptions(max_samples=args.max_eval_samples, device=args.device, seed=args.seed)
        evaluate_checkpoint(run / "model", args.eval, out, opts)
    metrics = json.loads((out / "metrics.json").read_text())
    chance = {}
    confusion = json.loads((out / "confusion.json").read_text())  # keeps the evaluation's label order
    for name, cm in confusion.items():
        if name.startswith("probe_cls/") or name == "digits/probe_cls":
            rows = [sum(row) for row in cm["matrix"]]
            chance["digits" if name.startswith("digits") else name.split("/", 1)[1]] = max(rows) / sum(rows)
    return metrics, chance, list(confusion)


def task_columns(results: dict) -> list[str]:
    """Label names in the order the evaluation found them, then the digits."""
    labels = [k.split("/", 1)[1] for r in results.values() for k in r["tasks"] if k.startswith("probe_cls/")]
    return list(dict.fromkeys(labels)) + ["digits"]


def metric(r: dict, method: str, task: str) -> float | None:
    return r["metrics"].get(f"digits/{method}" if task == "digits" else f"{method}/{task}")


def label_mean(r: dict, method: str, tasks: list[str]) -> float | None:
    values = [metric(r, method, t) for t in tasks if t != "digits"]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def markdown_table(header: list[str], rows: list[list], higher_is_better: list[bool | None], fmt) -> str:
    """Cells formatted by `fmt`; the best value of each column with a direction in bold (ties all bold)."""
    best = []
    for j, direction in enumerate(higher_is_better):
        values = [r[j] for r in rows if isinstance(r[j], int | float) and r[0] != "chance"]
        best.append(None if direction is None or not values else (max if direction else min)(values))
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|",
    ]
    for r in rows:
        cells = []
        for j, value in enumerate(r):
            text = fmt(value, j)
            bold = best[j] is not None and r[0] != "chance" and value == best[j]
            cells.append(f"**{text}**" if bold else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def percent(value, _column: int) -> str:
    return f"{100 * value:.1f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _score_cell(metrics: dict) -> str:
    score, low, high = (metrics.get(f"transfer/score{end}") for end in ("", "_low", "_high"))
    return "-" if score is None else f"{score:+.3f} [{low:+.3f}, {high:+.3f}]"


def _against_the_floor(results: dict, tasks: list[str]) -> str:
    """Per objective and task: the CLS probe's lift over its own random-init floor, in points, with its interval."""

    def lift(r: dict, task: str) -> str:
        name = "digits/probe_cls" if task == "digits" else f"probe_cls/{task}"
        values = [r["metrics"].get(f"lift/{name}{end}") for end in ("", "_low", "_high")]
        floor = r["metrics"].get(f"floor/{name}")
        if None in values or floor is None:
            return "-"
        return f"{100 * values[0]:+.1f} [{100 * values[1]:+.1f}, {100 * values[2]:+.1f}] (floor {100 * floor:.1f})"

    lines = [
        "| objective | transfer/score [95%] | " + " | ".join(tasks) + " |",
        "|---|---|" + "---|" * len(tasks),
        *(
            f"| {o} | {_score_cell(r['metrics'])} | " + " | ".join(lift(r, t) for t in tasks) + " |"
            for o, r in results.items()
        ),
    ]
    return (
        "### Against the random-init floor (linear probe, CLS: lift over the floor in points [95% interval])\n\n"
        + "\n".join(lines)
    )


def render(results: dict, chance: dict[str, float], args: argparse.Namespace, settings: dict) -> str:
    tasks = task_columns(results)
    parts = [
        f"Paradigms, preset {args.preset}: {args.steps} steps x batch {args.batch_size} = "
        f"{args.steps * args.batch_size} images seen each, base_lr {args.base_lr:g} (lr {settings['lr']:.2e}), "
        f"seed {args.seed}, {args.threads} threads. Accuracy in % on the held-out half of each task "
        f"({settings['test_sizes']}); best per column in bold; the chance row is the majority class.",
    ]
    for title, method in ACCURACY_TABLES:
        header = ["objective", "quadrant"] + tasks + ["mean over labels"]
        rows = [
            [o, " ".join(QUADRANTS[o])] + [metric(r, method, t) for t in tasks] + [label_mean(r, method, tasks)]
            for o, r in results.items()
        ]
        rows.append(
            ["chance", ""]
            + [chance.get(t) for t in tasks]
            + [label_mean({"metrics": {f"{method}/{t}": chance[t] for t in chance}}, method, tasks)]
        )
        parts.append(
            f"### {title}\n\n" + markdown_table(header, rows, [None, None] + [True] * (len(tasks) + 1), percent)
        )

    def compute_cell(value, column: int) -> str:
        if value is None:
            return "-"
        return [str, str, "{:.0f}".format, "{:.1f}".format, "{:.2f}".format, "{:.1f}".format, str][column](value)

    header = [
        "objective",
        "quadrant",
        "train s",
        "images/s",
        "fwd GFLOP/image",
        "≈ train TFLOP",
        "loss (first -> final)",
    ]
    rows = []
    for o, r in results.items():
        t = r["train"]
        tflop = 3 * r["gflops"] * args.steps * args.batch_size / 1e3 if r["gflops"] is not None else None
        loss = f"{t['first_loss']:.3f} (step {t['first_loss_step']}) -> {t['final_losses']['loss']:.3f}"
        parts_ = {k: v for k, v in t["final_losses"].items() if k.startswith("loss_")}
        if len(parts_) > 1:
            loss += " (" + ", ".join(f"{k[5:]} {v:.3f}" for k, v in sorted(parts_.items())) + ")"
        rows.append([o, " ".join(QUADRANTS[o]), t["seconds"], t["images_per_s"], r["gflops"], tflop, loss])
    parts.append(
        "### Compute (train TFLOP ≈ 3 x forward x images seen)\n\n"
        + markdown_table(header, rows, [None, None, False, True, False, False, None], compute_cell)
    )

    parts.append(_against_the_floor(results, tasks))
    grid = {o: label_mean(r, "probe_cls", tasks) for o, r in results.items()}
    cell = lambda o: f"{o}: {percent(grid[o], 0)}" if o in grid else "-"  # noqa: E731
    parts.append(
        "### The 2x2 (linear probe, CLS, mean accuracy over labels, %)\n\n"
        "| | discriminative | generative |\n|---|---|---|\n"
        f"| single-modal | {cell('simclr')} | {cell('mae')} |\n| multi-modal | {cell('clip')} | {cell('mug')} |"
    )
    scored = {o: _score_cell(r["metrics"]) for o, r in results.items()}
    cell = lambda o: f"{o}: {scored[o]}" if o in scored else "-"  # noqa: E731
    parts.append(
        "### The 2x2 of transfer/score (0 = the random-init floor; 95% interval)\n\n"
        "| | discriminative | generative |\n|---|---|---|\n"
        f"| single-modal | {cell('simclr')} | {cell('mae')} |\n| multi-modal | {cell('clip')} | {cell('mug')} |"
    )
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, chance = {}, {}
    for i, objective in enumerate(args.objectives, 1):
        print(f"[{i}/{len(args.objectives)}] {objective} ({', '.join(QUADRANTS[objective])}): pre-training", flush=True)
        trained = pretrain(objective, args)
        print(f"[{i}/{len(args.objectives)}] {objective}: evaluating the frozen encoder", flush=True)
        metrics, chance_, tasks = evaluate(objective, args)
        chance.update(chance_)
        gflops = forward_gflops_per_image(out / objective / "model", min(args.batch_size, 16))
        results[objective] = {
            "quadrant": QUADRANTS[objective],
            "train": trained,
            "gflops": gflops,
            "metrics": metrics,
            "tasks": tasks,
        }
        print(
            f"[{i}/{len(args.objectives)}] {objective}: trained in {trained['seconds']:.0f} s "
            f"({trained['images_per_s']:.1f} images/s), final loss {trained['final_losses']['loss']:.4f}; "
            f"{time.perf_counter() - started:.0f} s so far",
            flush=True,
        )

    confusion = json.loads((out / args.objectives[0] / "eval" / "confusion.json").read_text())
    test_sizes = {
        ("digits" if k.startswith("digits") else k.split("/", 1)[1]): sum(map(sum, v["matrix"]))
        for k, v in confusion.items()
        if k.startswith("probe_cls/") or k == "digits/probe_cls"
    }
    settings = {
        "preset": args.preset,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "images_seen": args.steps * args.batch_size,
        "base_lr": args.base_lr,
        "lr": args.base_lr * args.batch_size / 256,
        "seed": args.seed,
        "threads": args.threads,
        "num_workers": args.num_workers,
        "train": args.train,
        "eval": args.eval,
        "max_eval_samples": args.max_eval_samples,
        "test_sizes": ", ".join(f"{k} {v}" for k, v in test_sizes.items()),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, python {platform.python_version()}",
    }
    table = render(results, chance, args, settings)
    total = time.perf_counter() - started
    (out / "paradigms.md").write_text(table)
    (out / "paradigms.json").write_text(
        json.dumps({"settings": settings, "chance": chance, "objectives": results, "total_seconds": total}, indent=2)
    )
    print("\n" + table)
    print(f"wrote {out / 'paradigms.md'} and {out / 'paradigms.json'}; total wall time {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
