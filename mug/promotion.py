"""The model gate: one rule for the pipelines' `beats_production` step and for the registry when it moves
`production`. A candidate is promoted only when its transfer score is above the random-init floor (the lower end
of its interval above 0) and, if there is a production model, above production's by more than the noise: the
paired bootstrap over the same held-out images puts the difference's lower end above 0. Without outcomes on the
same images the test is unpaired and stricter: the candidate's interval must lie wholly above production's.

Imports numpy, not torch, so the registry stays quick to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mug.evaluation.significance import CONFIDENCE, Outcomes, comparable, paired_difference
from mug.evaluation.significance import TRANSFER_SCORE as SCORE


@dataclass
class Evidence:
    """What a model brings to the gate: its evaluation's metrics and, where kept, its per-image outcomes."""

    metrics: dict[str, float]
    outcomes: Outcomes | None = None

    def score(self, end: str = "") -> float:
        value = self.metrics.get(SCORE + end)
        return math.nan if value is None else float(value)


@dataclass
class Decision:
    promote: bool
    reason: str  # one sentence, with the figures
    figures: dict[str, float] = field(default_factory=dict)  # the test's numbers, for the model card and tags


def _interval(evidence: Evidence) -> str:
    return f"{evidence.score():.4f} [{evidence.score('_low'):.4f}, {evidence.score('_high'):.4f}]"


def decide(candidate: Evidence, production: tuple[int, Evidence] | None) -> Decision:
    """Whether `candidate` takes `production` ((version, evidence) of the model there; None when there is none)."""
    score, low = candidate.score(), candidate.score("_low")
    stays = f"production stays on v{production[0]}" if production else "there is no production version yet"
    if math.isnan(score) or math.isnan(low):
        return Decision(False, f"{SCORE} or its interval is missing or NaN, so it is candidate only; {stays}")
    if low <= 0:
        return Decision(
            False,
            f"{SCORE} {_interval(candidate)} is not above the random-init floor (0) at {CONFIDENCE:.0%}; {stays}",
        )
    if production is None:
        return Decision(True, f"{SCORE} {_interval(candidate)} is above the floor and there is no production yet")
    version, incumbent = production
    if math.isnan(incumbent.score()):
        return Decision(False, f"production v{version} has no {SCORE} to compare with, so it stays (promote by hand)")
    if math.isnan(incumbent.score("_high")) and not incumbent.outcomes:
        return Decision(
            False,
            f"production v{version} was scored without an interval (before the floor-relative {SCORE}), so the "
            "two cannot be compared and it stays: promote by hand with `mug registry promote`",
        )
    if candidate.outcomes and incumbent.outcomes and comparable(candidate.outcomes, incumbent.outcomes):
        test = paired_difference(candidate.outcomes, incumbent.outcomes)
        figures = {
            "difference": test.difference,
            "difference_low": test.low,
            "difference_high": test.high,
            "p_not_better": test.p_not_better,
            "paired": 1.0,
        }
        versus = (
            f"{SCORE} {_interval(candidate)} against production v{version}'s {_interval(incumbent)} on the same "
            f"images: difference {test.difference:+.4f} [{test.low:+.4f}, {test.high:+.4f}] (paired bootstrap, "
            f"{CONFIDENCE:.0%})"
        )
        if test.low > 0:
            return Decision(True, f"{versus}: better beyond the noise, production moves to it", figures)
        return Decision(False, f"{versus}: not better beyond the noise, production stays", figures)
    figures = {"paired": 0.0}
    versus = (
        f"{SCORE} {_interval(candidate)} against production v{version}'s {_interval(incumbent)}, not on the same "
        "images (unpaired: the intervals must not overlap)"
    )
    if low > incumbent.score("_high"):
        return Decision(True, f"{versus}: better, production moves to it", figures)
    return Decision(False, f"{versus}: not clearly better, production stays", figures)
