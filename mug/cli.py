"""The `mug` command line. Each sub-command parses its arguments and calls one library function; errors a
user can fix are printed as one line and exit with code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mug.errors import UserError


def _caption(args: argparse.Namespace) -> None:
    from mug.demo import caption_file
    from mug.generation import GenerationConfig

    generation = GenerationConfig(
        max_len=args.max_len,
        strategy=args.strategy,
        num_beams=args.beams,
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
    )
    result = caption_file(args.checkpoint, args.image, args.prefix, args.mask_ratio, generation, args.strip)
    print(result.caption if result.caption is not None else "(this checkpoint has no caption decoder)")
    if args.strip:
        print(f"strip (masked | masked + reconstruction | reconstruction): {args.strip}", file=sys.stderr)


def _demo(args: argparse.Namespace) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mug",
        description="MUG: multi-modal generative vision pre-training on web image-text pairs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cap = sub.add_parser(
        "caption",
        help="mask an image, reconstruct it and continue a caption (the paper's demo)",
        description="Encode IMAGE with a random mask, print a caption continued from --prefix, and optionally "
        "write the strip (masked | masked + reconstruction | reconstruction).",
    )
    cap.add_argument("checkpoint", help="checkpoint directory written by mug (model.safetensors, config.json, ...)")
    cap.add_argument("image", help="an image file (any format Pillow reads)")
    cap.add_argument("--prefix", default="a photo of a", help="caption prefix to continue (default: %(default)r)")
    cap.add_argument("--mask-ratio", type=float, default=0.75, help="fraction of patches hidden (default: 0.75)")
    cap.add_argument("--max-len", type=int, default=20, help="caption length in tokens, prefix included")
    cap.add_argument("--strategy", choices=("greedy", "beam", "topk"), default="greedy")
    cap.add_argument("--beams", type=int, default=4, help="beam width for --strategy beam")
    cap.add_argument("--top-k", type=int, default=0, help="keep the k likeliest tokens (topk; 0 = all)")
    cap.add_argument("--top-p", type=float, default=0.9, help="nucleus mass to sample from (topk)")
    cap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (topk)")
    cap.add_argument("--strip", metavar="PNG", help="write the demo strip to this file")
    cap.set_defaults(func=_caption)

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
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        print(f"mug {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
