"""`mug demo`: a checkpoint to play with before any real training."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_command(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="overfit a tiny MUG on a few synthetic pairs, then caption them (no data, no network)",
        description="Train a tiny MUG on a handful of synthetic image-caption pairs until it memorises them, "
        "save the checkpoint, and run the caption demo on a few of its images.",
    )
    demo.add_argument("--out", default="runs/demo", help="output directory (default: %(default)s)")
    demo.add_argument("--pairs", type=int, default=8, help="number of synthetic image-caption pairs")
    demo.add_argument("--steps", type=int, default=500, help="training steps on that one batch")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mug.checkpoint import read_config
    from mug.demo import build_demo_checkpoint, caption_file
    from mug.generation import GenerationConfig

    out = Path(args.out)
    checkpoint = build_demo_checkpoint(out, pairs=args.pairs, steps=args.steps, seed=args.seed)
    meta = read_config(checkpoint)[1]
    first, last = meta["initial_losses"], meta["final_losses"]
    falls = ", ".join(f"{k} {first[k]:.3f} -> {last[k]:.3f}" for k in ("loss_rec", "loss_cap"))
    print(f"trained a tiny MUG on {args.pairs} synthetic pairs for {args.steps} steps: {falls}")
    print(f"checkpoint: {checkpoint}")
    for i in range(min(args.pairs, 3)):
        image = out / "images" / f"{i}.png"
        strip = out / f"strip_{i}.png"
        result = caption_file(checkpoint, image, "a photo of a", 0.75, GenerationConfig(), strip)
        truth = (out / "images" / f"{i}.txt").read_text().strip()
        print(f"{image}\n  caption:   {result.caption}\n  reference: {truth}\n  strip:     {strip}")
    print(f"try: mug caption {checkpoint} {out / 'images' / '3.png'} --strategy beam --strip strip.png")
