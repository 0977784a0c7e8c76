"""`mug data ...`: make, check and learn from web image-text shards."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mug.data.gate.checks import GateResult


def add_command(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="synthesise, validate and tokenise web image-text shards")
    verbs = data.add_subparsers(dest="verb", required=True, metavar="VERB")

    syn = verbs.add_parser(
        "synth",
        help="write the synthetic web corpus as img2dataset shards",
        description="Render scenes of coloured shapes with web-like captions (file names, boilerplate, SEO "
        "lists, truncation, empty captions, duplicate images) into OUT/train (noisy) and OUT/eval (clean, "
        "labelled), in img2dataset's format. The same seed writes byte-identical shards.",
    )
    syn.add_argument("--out", required=True, help="output folder (gets train/ and eval/)")
    syn.add_argument("--train", type=int, default=4000, help="train samples (default: %(default)s)")
    syn.add_argument("--eval", type=int, default=1000, help="eval samples (default: %(default)s)")
    syn.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default: %(default)s)")
    syn.add_argument("--image-size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--jpeg-quality", type=int, default=90)
    syn.add_argument("--workers", type=int, default=1, help="processes writing shards")
    for kind, rate in (("unrelated", 0.2), ("truncated", 0.03), ("empty", 0.01), ("duplicate", 0.01), ("corrupt", 0)):
        syn.add_argument(f"--{kind}-rate", type=float, default=rate, help=f"fraction of {kind} train samples")
    syn.set_defaults(func=_synth)

    tok = verbs.add_parser(
        "tokenizer",
        help="train the caption tokenizer (WordPiece) on the shards' captions",
        description="Learn an uncased WordPiece vocabulary from the captions of SHARDS and save it as a standard "
        "HF tokenizer.json.",
    )
    tok.add_argument("shards", nargs="+", help="shard paths, folders of .tar files or brace patterns")
    tok.add_argument("--out", required=True, help="the tokenizer.json to write")
    tok.add_argument("--vocab-size", type=int, default=8192)
    tok.add_argument("--min-frequency", type=int, default=2)
    tok.set_defaults(func=_tokenizer)

    val = verbs.add_parser(
        "validate",
        help="the data gate: scan shards and check them with Great Expectations",
        description="Scan img2dataset shards into a per-sample table and check it against thresholds "
        "(decode failures, empty or file-name captions, duplicates, image size, caption length). Exit code 0 "
        "when the gate passes, 1 when it fails (each failed check on one line), 2 on bad input.",
    )
    val.add_argument(
        "shards",
        nargs="+",
        help="shard paths, folders of .tar files, brace patterns, or DVC addresses dvc://REPO@REV#PATH (a git URL "
        "or path, a tag, branch or commit, a DVC-tracked path in it: fetched from that revision's remote)",
    )
    val.add_argument("--thresholds", help="YAML of thresholds (default: mug/data/gate/thresholds.yaml)")
    val.add_argument("--tokenizer", help="tokenizer.json, to check caption lengths in tokens")
    val.add_argument("--min-side", type=int, help="smallest image side allowed (e.g. the model's input size)")
    val.add_argument("--out", help="folder for validation.json and validation.html")
    val.add_argument("--workers", type=int, help="processes scanning shards (default: one per core)")
    val.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from mug.data.dvc_source import materialize
    from mug.data.gate.report import write_report
    from mug.data.gate.validate import validate_shards
    from mug.errors import writing

    source = materialize(args.shards)
    if source.lineage:
        print(source.describe())
    if args.out:
        with writing("the validation report"):  # before the scan, so a bad --out fails at once
            Path(args.out).mkdir(parents=True, exist_ok=True)
    result = validate_shards(source.shards, args.thresholds, args.tokenizer, args.min_side, args.workers)
    if args.out:
        write_report(result, args.out)
    return gate_exit_code(result, args.out)


def gate_exit_code(result: GateResult, out_dir: str | Path | None = None) -> int:
    """The gate as a command's outcome: 0 when it passed (a summary on stdout), 1 when it failed (each failed
    check on one line on stderr)."""
    ran = [check for check in result.checks if not check.skipped]
    summary = (
        f"{len(ran)} checks on {result.rows} samples from {len(result.shards)} shards "
        f"({result.samples_per_s:,.0f} samples/s scanned)"
    )
    if out_dir is not None:
        summary += f"; report: {Path(out_dir) / 'validation.html'}"
    for check in result.checks:
        if check.skipped:
            print(f"skipped {check.name}: {check.note}", file=sys.stderr)
    if result.passed:
        print(f"data gate passed: {summary}")
        return 0
    failures = result.failures()
    print(f"data gate failed {len(failures)} of {summary}", file=sys.stderr)
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    return 1


def _synth(args: argparse.Namespace) -> None:
    from mug.data.synthetic.corpus import NoiseConfig, synthesize_corpus

    noise = NoiseConfig(
        args.unrelated_rate, args.truncated_rate, args.empty_rate, args.duplicate_rate, args.corrupt_rate
    )
    summary = synthesize_corpus(
        args.out,
        args.train,
        args.eval,
        args.shard_size,
        args.image_size,
        args.seed,
        noise,
        args.jpeg_quality,
        workers=args.workers,
    )
    noisy = ", ".join(f"{kind} {count}" for kind, count in summary.noise.items() if count)
    print(
        f"wrote {summary.samples['train']} train and {summary.samples['eval']} eval samples in "
        f"{summary.shards['train'] + summary.shards['eval']} shards to {summary.out_dir} "
        f"({summary.samples_per_s:,.0f} samples/s); train noise: {noisy or 'none'}"
    )


def _tokenizer(args: argparse.Namespace) -> None:
    from mug.data.tokenizer_corpus import train_tokenizer

    tokenizer = train_tokenizer(args.shards, args.out, args.vocab_size, args.min_frequency)
    print(f"tokenizer with {tokenizer.vocab_size} tokens: {args.out}")
