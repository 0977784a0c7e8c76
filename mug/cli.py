"""The `mug` command line. Each sub-command parses its arguments and calls library functions; errors a user
can fix are printed as one line and exit with code 2."""

from __future__ import annotations

import argparse
import sys

from mug.commands import caption, data, demo, evaluate, pipelines, pretrain, registry, sweep
from mug.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mug",
        description="MUG: multi-modal generative vision pre-training on web image-text pairs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (caption, demo, data, pretrain, evaluate, sweep, registry, pipelines):
        group.add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except UserError as err:
        print(f"mug {args.command}: error: {err}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
