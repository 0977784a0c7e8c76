"""The model gate: one rule for the pipelines' `beats_production` step and for the registry when it moves
`production`. A candidate is promoted only when its transfer score is above the random-init floor (the lower end
of its interval above 0) and, if there is a production model, above production's by more than the noise.

Two noises count. The eval images' (which images are held out): the paired bootstrap over the same images gives
the difference's interval. And training's (how a run of the same recipe falls with another seed or data order):
measured on the sample corpus, two such runs differ by more than the images' interval, so the gate widens the
difference's interval by `training_noise`, the standard deviation of transfer/score between re-seeded runs of one
recipe (each of the two models brings its own: sqrt(se_images^2 + 2 training_noise^2)). Without outcomes on the
same images the test is unpaired and stricter: each score's interval, widened by the training noise, must lie
apart from the other's.

Imports numpy, not torch, so the registry stays quick to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from mug.errors import UserError
from mug.evaluation.significance import CONFIDENCE, Outcomes, comparable, paired_difference
from mug.evaluation.significance import TRANSFER_SCORE as SCORE

# The standard deviation of transfer/score between trainings of one recipe that differ only in seed or data order,
# pooled over objectives: the tiny preset at 800 steps on the sample corpus (docs/benchmarks.md, "The gate and
# training noise"). Measure your recipe's with `benchmarks/gate.py --reseeded` and set it per pipeline run.
TRAINING_NOISE = 0.046
_Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


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


def _widened(low: float, high: float, spread: float) -> tuple[float, float]:
    """An interval [low, high] at CONFIDENCE, widened by an independent noise of standard deviation `spread`."""
    middle, half = (low + high) / 2, (high - low) / 2
    half = _Z * math.hypot(half / _Z, spread)
    return middle - half, middle + half


def decide(
    candidate: Evidence, production: tuple[int, Evidence] | None, training_noise: float = TRAINING_NOISE
) -> Decision:
    """Whether `candidate` takes `production` ((version, evidence) of the model there; None when there is none),
    allowing for `training_noise` (see the module's docstring; 0 counts the eval images' noise only)."""
    if not training_noise >= 0:
        raise UserError(f"training_noise must be a standard deviation >= 0, got {training_noise}")
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
    allowance = f"training noise {training_noise:.3f} (sd between re-seeded runs)"
    if candidate.outcomes and incumbent.outcomes and comparable(candidate.outcomes, incumbent.outcomes):
        test = paired_difference(candidate.outcomes, incumbent.outcomes)
        low, high = _widened(test.low, test.high, math.sqrt(2) * training_noise)
        figures = {
            "difference": test.difference,
            "difference_low": test.low,
            "difference_high": test.high,
            "p_not_better": test.p_not_better,
            "paired": 1.0,
            "training_noise": training_noise,
            "difference_with_training_noise_low": low,
            "difference_with_training_noise_high": high,
        }
        versus = (
            f"{SCORE} {_interval(candidate)} against production v{version}'s {_interval(incumbent)} on the same "
            f"images: difference {test.difference:+.4f} [{test.low:+.4f}, {test.high:+.4f}] (paired bootstrap, "
            f"{CONFIDENCE:.0%}), [{low:+.4f}, {high:+.4f}] with {allowance}"
        )
        if low > 0:
            return Decision(True, f"{versus}: better beyond the noise, production moves to it", figures)
        return Decision(False, f"{versus}: not better beyond the noise, production stays", figures)
    ours = _widened(low, candidate.score("_high"), training_noise)
    theirs = _widened(incumbent.score("_low"), incumbent.score("_high"), training_noise)
    figures = {"paired": 0.0, "training_noise": training_noise}
    versus = (
        f"{SCORE} {_interval(candidate)} against production v{version}'s {_interval(incumbent)}, not on the same "
        f"images (unpaired: the intervals, widened by {allowance} to [{ours[0]:.4f}, {ours[1]:.4f}] and "
        f"[{theirs[0]:.4f}, {theirs[1]:.4f}], must not overlap)"
    )
    if ours[0] > theirs[1]:
        return Decision(True, f"{versus}: better, production moves to it", figures)
    return Decision(False, f"{versus}: not clearly better, production stays", figures)
