"""`mug data ...`: make, check and learn from web image-text shards."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="synthesise, validate and tokenise web image-text shards")
    verbs = data.add_subparsers(dest="verb", required=True, metavar="VERB")

    val = verbs.add_parser(
        "validate",
        help="the data gate: scan shards and check them with Great Expectations",
        description="Scan img2dataset shards into a per-sample table and check it against thresholds "
        "(decode failures, empty or file-name captions, duplicates, image size, caption length). Exit code 0 "
        "when the gate passes, 1 when it fails (each failed check on one line), 2 on bad input.",
    )
    val.add_argument("shards", nargs="+", help="shard paths, folders of .tar files or brace patterns")
    val.add_argument("--thresholds", help="YAML of thresholds (default: mug/data/thresholds.yaml)")
    val.add_argument("--tokenizer", help="tokenizer.json, to check caption lengths in tokens")
    val.add_argument("--min-side", type=int, help="smallest image side allowed (e.g. the model's input size)")
    val.add_argument("--out", help="folder for validation.json and validation.html")
    val.add_argument("--workers", type=int, help="processes scanning shards (default: one per core)")
    val.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from mug.data.validate import run_gate

    return run_gate(args.shards, args.thresholds, args.tokenizer, args.out, args.min_side, args.workers)
