"""`mug evaluate`: frozen-encoder transfer evaluation of a checkpoint."""

from __future__ import annotations

import argparse
import sys


def add_command(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="measure a checkpoint's frozen encoder: probes, kNN, captions, zero-shot, reconstruction",
        description="Evaluate a checkpoint of any objective (mae, simclr, clip, mug) with its encoder frozen, on the "
        "labelled eval shards and on scikit-learn's 8x8 digits: linear probes and kNN per label on the CLS and "
        "mean-pooled features; for mug, caption perplexity, BLEU-4 and CIDEr-D of greedy captions, and zero-shot "
        "classification by scoring prompts; for clip, zero-shot by embedding similarity; for mae and mug, "
        "reconstruction MSE on masked patches. Every probe also runs on the same architecture at random "
        "initialisation (the floor, cached in $MUG_CACHE_DIR/floors, default ~/.cache/mug/floors); transfer/score "
        "is the share of the headroom above that floor which pre-training closed (0: no better than random "
        "weights), with a 95% bootstrap interval. Writes metrics.json (flat names, listed in "
        "mug/evaluation/evaluate.py), confusion.json (labels + matrix per classifier), outcomes.json (per-image "
        "hits, what the model gate pairs models on) and report.html (standalone) to --out.",
    )
    ev.add_argument(
        "checkpoint",
        metavar="CHECKPOINT_DIR",
        help="checkpoint directory (model.safetensors, config.json, tokenizer.json, ...)",
    )
    ev.add_argument(
        "--data", nargs="+", required=True, metavar="URLS", help="eval shards: paths, folders, brace patterns or URLs"
    )
    ev.add_argument("--out", required=True, help="output directory for metrics.json, confusion.json, report.html")
    ev.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
    ev.add_argument("--max-samples", type=int, help="read at most this many eval samples and digit images (quick runs)")
    ev.add_argument(
        "--masked-samples",
        type=int,
        default=1000,
        help="mae and mug: reconstruction, caption perplexity, greedy captions and zero-shot from the first N images, "
        "up to 8x the cost of the features per image (default: %(default)s)",
    )
    ev.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    ev.add_argument("--num-workers", type=int, default=0, help="data loader worker processes (default: 0)")
    ev.add_argument("--seed", type=int, default=0, help="seeds the splits and the masks (default: 0)")
    ev.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mug.errors import UserError
    from mug.evaluation.evaluate import EvalOptions, evaluate_checkpoint
    from mug.evaluation.significance import verdict

    for flag, value in (("--max-samples", args.max_samples), ("--masked-samples", args.masked_samples)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    opts = EvalOptions(
        batch_size=args.batch_size,
        max_samples=args.max_samples,
        masked_samples=args.masked_samples,
        device=args.device,
        num_workers=args.num_workers,
        seed=args.seed,
    )
    metrics = evaluate_checkpoint(args.checkpoint, args.data, args.out, opts)
    shown = {
        k: v
        for k, v in metrics.items()
        if not k.startswith(("lift/", "transfer/")) and not k.endswith(("_low", "_high"))
    }
    width = max(map(len, shown))
    for name, value in sorted(shown.items()):
        print(f"{name:<{width}}  {value:.4f}")
    score, low, high = (metrics[f"transfer/score{end}"] for end in ("", "_low", "_high"))
    print(f"transfer/score {score:.4f} [{low:.4f}, {high:.4f}] (95%), {verdict(low, high)}")
    print(f"report: {args.out}/report.html", file=sys.stderr)
