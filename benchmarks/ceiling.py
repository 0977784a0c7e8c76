"""The supervised ceiling of the eval labels: the same encoder trained on the labels themselves for the budget a
pre-training run gets, then evaluated by `mug evaluate`'s protocol (its floor, probes and intervals included).

One linear head per label on the CLS token; encoder and heads are trained on the train shards' labels with the sum
of the labels' cross-entropies (AdamW, MAE's recipe: lr = base_lr x batch / 256, linear warm-up then cosine).
Train images are read without crop or flip, which would change counts and swap left and right. The trained
encoder is saved as an MAE-shaped checkpoint (OUT/model) and evaluated into OUT/eval, so its figures sit beside a
pre-trained model's on the same split: a pre-training run between floor and ceiling learned that share of what
the labels teach.

    .venv/bin/python benchmarks/ceiling.py --train data/train --eval data/eval --out runs/ceiling
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mug.checkpoint import save_checkpoint
from mug.config import build_config
from mug.data.loading.loader import LoaderConfig, make_loader
from mug.evaluation.evaluate import HEADLINE, EvalOptions, evaluate_checkpoint, metric_name
from mug.models import build_model
from mug.optim import build_optimizer
from mug.train.schedule import lr_at, scaled_lr


def label_values(urls: list[str], batch_size: int, image_size: int) -> dict[str, list[str]]:
    """Every label's values, read from the train shards' .json (one pass, no images kept)."""
    values: dict[str, set[str]] = {}
    loader = make_loader(LoaderConfig(urls=urls, batch_size=batch_size, image_size=image_size, train=False), None)
    for batch in loader:
        for item in batch["labels"]:
            for name, value in (item or {}).items():
                values.setdefault(name, set()).add(str(value))
    return {name: sorted(v) for name, v in values.items() if len(v) > 1}


def supervise(encoder: nn.Module, classes: dict[str, list[str]], args: argparse.Namespace) -> list[dict]:
    """Train encoder + one linear head per label on the CLS token; returns each label's training loss averaged
    over every 25 steps."""
    heads = nn.ModuleDict({name: nn.Linear(encoder.cfg.width, len(values)) for name, values in classes.items()})
    index = {name: {v: i for i, v in enumerate(values)} for name, values in classes.items()}
    model = nn.ModuleDict({"encoder": encoder, "heads": heads})
    peak = scaled_lr(args.base_lr, args.batch_size)
    optimizer = build_optimizer(model, lr=peak, weight_decay=args.weight_decay)
    warmup = args.warmup if args.warmup is not None else args.steps // 20
    loader = make_loader(
        LoaderConfig(
            urls=args.train,
            batch_size=args.batch_size,
            image_size=encoder.cfg.img_size,
            train=False,  # no crop or flip: they would break the count and relation labels
            shuffle_buffer=1000,
            seed=args.seed,
        ),
        None,
    )
    encoder.train()
    history, window, step = [], dict.fromkeys(classes, 0.0), 0
    while step < args.steps:
        for batch in loader:
            if step == args.steps:
                break
            if len(batch["key"]) < args.batch_size:
                continue  # the epoch's last, partial batch
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, peak, args.steps, warmup)
            cls = encoder(batch["image"]).latent[:, 0]  # [N, D]
            targets = {name: [index[name][str(item[name])] for item in batch["labels"]] for name in classes}
            per_label = {name: F.cross_entropy(heads[name](cls), torch.tensor(targets[name])) for name in classes}
            optimizer.zero_grad(set_to_none=True)
            sum(per_label.values()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            for name, value in per_label.items():
                window[name] += value.item() / 25
            step += 1
            if step % 25 == 0:
                history.append({"step": step} | {k: round(v, 4) for k, v in window.items()})
                print(f"  step {step:4d}  " + "  ".join(f"{k} {v:.3f}" for k, v in window.items()), flush=True)
                window = dict.fromkeys(classes, 0.0)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", nargs="+", required=True, help="train shards (folder, path or brace pattern)")
    parser.add_argument("--eval", nargs="+", required=True, help="labelled eval shards")
    parser.add_argument("--out", required=True, help="OUT/model, OUT/eval and OUT/ceiling.json go here")
    parser.add_argument("--steps", type=int, default=300, help="supervised steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--base-lr", type=float, default=1.5e-3, help="lr = base_lr x batch / 256")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=int, help="warm-up steps (default: 5%% of --steps)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seed", type=int, default=0, help="model init, data order and probe split")
    parser.add_argument("--max-eval-samples", type=int, help="cap the eval samples and the digits")
    args = parser.parse_args()
    out = Path(args.out)

    torch.manual_seed(args.seed)
    model = build_model(build_config(args.preset, overrides={"objective": {"name": "mae"}}))
    classes = label_values(args.train, 256, model.cfg.encoder.img_size)
    start = time.perf_counter()
    history = supervise(model.encoder, classes, args)
    seconds = round(time.perf_counter() - start, 1)
    metadata = {"objective": "supervised ceiling", "steps": args.steps, "labels": list(classes)}
    save_checkpoint(out / "model", model, metadata=metadata)
    opts = EvalOptions(max_samples=args.max_eval_samples, seed=args.seed)
    metrics = evaluate_checkpoint(out / "model", args.eval, out / "eval", opts)
    result = {"args": vars(args), "train_seconds": seconds, "losses": history, "metrics": metrics}
    (out / "ceiling.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nsupervised {args.steps} steps ({seconds:.0f} s); CLS probe on the held-out half, 95% intervals")
    print(f"{'label':<11} {'floor':>6} {'ceiling':>8} {'interval':>15} {'lift':>7}")
    for name in [*classes, "digits"]:
        key = metric_name(HEADLINE, name)
        if key in metrics:
            low, high = metrics[key + "_low"], metrics[key + "_high"]
            print(f"{name:<11} {metrics['floor/' + key]:6.3f} {metrics[key]:8.3f} [{low:.3f}, {high:.3f}]"
                  f" {metrics['lift/' + key]:+7.3f}")  # fmt: skip
    print(f"report: {out / 'eval' / 'report.html'}")


if __name__ == "__main__":
    main()
