"""The model gate on real evaluations: each candidate against a production model, by the rule `beats_production`
and the registry apply (`mug.promotion.decide`, a paired bootstrap over the same held-out images), and the
reverse (production as the candidate), so a pair that would flip production back and forth shows as
"promote" both ways. Each argument is a `mug evaluate --out` folder (metrics.json and outcomes.json).

    .venv/bin/python benchmarks/gate.py --production runs/a/eval --candidates runs/b/eval runs/c/eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mug.promotion import decide
from mug.steps import evidence


def load(folder: str):
    return evidence(json.loads((Path(folder) / "metrics.json").read_text()), folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--production", required=True, help="the production model's evaluation folder")
    parser.add_argument("--candidates", nargs="+", required=True, help="candidates' evaluation folders")
    args = parser.parse_args()
    production = load(args.production)
    for folder in args.candidates:
        candidate = load(folder)
        forward, backward = decide(candidate, (1, production)), decide(production, (2, candidate))
        print(f"{folder} against {args.production}:")
        print(f"  promote: {'yes' if forward.promote else 'no'}: {forward.reason}")
        print(f"  and the other way round: {'yes' if backward.promote else 'no'}: {backward.reason}")


if __name__ == "__main__":
    main()
