"""The model gate on real evaluations, and the training noise it allows for.

Each candidate is tested against a production model by the rule `beats_production` and the registry apply
(`mug.promotion.decide`: a paired bootstrap over the same held-out images, widened by the training noise), and
the other way round (production as the candidate), so a pair that would flip production back and forth shows as
"promote" both ways. `--reseeded` takes groups of evaluations of runs that differ only in seed or data order (one
group per recipe, folders joined by commas) and prints the pooled standard deviation of their transfer/score:
the figure to give the gate as `training_noise`. Each folder is a `mug evaluate --out` folder (metrics.json and
outcomes.json).

    .venv/bin/python benchmarks/gate.py --production runs/a/eval --candidates runs/b/eval runs/c/eval
    .venv/bin/python benchmarks/gate.py --reseeded runs/mug-s0/eval,runs/mug-s1/eval runs/mae-s0/eval,runs/mae-s1/eval
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mug.promotion import TRAINING_NOISE, decide
from mug.steps import evidence


def load(folder: str):
    return evidence(json.loads((Path(folder) / "metrics.json").read_text()), folder)


def pooled_spread(groups: list[list[float]]) -> tuple[float, int]:
    """The pooled within-group standard deviation of scores (each group one recipe's re-seeded runs) and its
    degrees of freedom: sum of squared deviations from each group's mean / (runs - groups)."""
    squares = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in groups)
    freedom = sum(len(g) for g in groups) - len(groups)
    if freedom < 1:
        raise SystemExit("--reseeded needs a group with at least two runs")
    return math.sqrt(squares / freedom), freedom


def report_spread(groups: list[str]) -> None:
    scores = [[load(folder).score() for folder in group.split(",")] for group in groups]
    for group, values in zip(groups, scores, strict=True):
        print(f"{group}: transfer/score {', '.join(f'{v:+.4f}' for v in values)}")
    spread, freedom = pooled_spread(scores)
    print(f"training noise (pooled sd between re-seeded runs): {spread:.4f} on {freedom} degrees of freedom")


def report_decisions(production_folder: str, candidates: list[str], training_noise: float) -> None:
    production = load(production_folder)
    for folder in candidates:
        candidate = load(folder)
        forward = decide(candidate, (1, production), training_noise)
        backward = decide(production, (2, candidate), training_noise)
        print(f"{folder} against {production_folder}:")
        print(f"  promote: {'yes' if forward.promote else 'no'}: {forward.reason}")
        print(f"  and the other way round: {'yes' if backward.promote else 'no'}: {backward.reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--production", help="the production model's evaluation folder")
    parser.add_argument("--candidates", nargs="+", default=[], help="candidates' evaluation folders")
    parser.add_argument(
        "--training-noise",
        type=float,
        default=TRAINING_NOISE,
        help="the gate's allowance: sd of transfer/score between re-seeded runs (default: %(default)s)",
    )
    parser.add_argument(
        "--reseeded", nargs="+", default=[], metavar="A,B[,...]", help="groups of re-seeded runs' evaluation folders"
    )
    args = parser.parse_args()
    if not args.reseeded and not (args.production and args.candidates):
        parser.error("give --production with --candidates, or --reseeded")
    if args.reseeded:
        report_spread(args.reseeded)
    if args.production and args.candidates:
        report_decisions(args.production, args.candidates, args.training_noise)


if __name__ == "__main__":
    main()
