"""`mug caption`: the paper's demo on one image."""

from __future__ import annotations

import argparse
import sys


def add_command(sub: argparse._SubParsersAction) -> None:
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
    cap.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
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
