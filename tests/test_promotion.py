"""The model gate's rule (`mug.promotion.decide`), shared by the pipelines' branch and the registry."""

import math

import pytest

from mug.errors import UserError
from mug.promotion import TRAINING_NOISE, Evidence, decide
from tests.test_significance import outcomes

RATES = {"shape": (0.40, 0.14), "count": (0.50, 0.30), "relation": (0.60, 0.50)}


def evidence(rates: dict, seed: int) -> Evidence:
    """An evaluation as `mug evaluate` reports it: per-image outcomes and the metrics summarised from them."""
    from mug.evaluation.significance import summarize

    kept = outcomes(rates, seed=seed)
    summary = summarize(kept)
    return Evidence({f"transfer/score{e}": summary[f"score{e}"] for e in ("", "_low", "_high")}, kept)


def test_a_model_not_above_its_floor_never_becomes_production():
    floor_like = evidence({t: (f, f) for t, (_, f) in RATES.items()}, seed=1)
    decision = decide(floor_like, None)
    assert not decision.promote and "not above the random-init floor" in decision.reason


def test_the_first_model_above_the_floor_becomes_production():
    decision = decide(evidence(RATES, seed=1), None)
    assert decision.promote and "no production yet" in decision.reason


def test_a_reseeded_model_does_not_move_production_either_way():
    a, b = evidence(RATES, seed=1), evidence(RATES, seed=2)
    for candidate, production in ((a, b), (b, a)):
        decision = decide(candidate, (1, production))
        assert not decision.promote and "not better beyond the noise" in decision.reason
        assert decision.figures["paired"] == 1.0 and decision.figures["difference_low"] < 0


def test_a_lead_within_the_training_noise_does_not_move_production():
    """5 points on every task (+0.07 transfer/score) is beyond the eval images' noise, but not beyond the spread
    between two trainings of one recipe (the sample corpus's MUG runs differ by that much with another data
    order)."""
    ahead = evidence({t: (m + 0.05, f) for t, (m, f) in RATES.items()}, seed=3)
    decision = decide(ahead, (4, evidence(RATES, seed=1)))
    assert not decision.promote and "not better beyond the noise" in decision.reason
    assert decision.figures["difference_low"] > 0 > decision.figures["difference_with_training_noise_low"]
    assert decision.figures["training_noise"] == TRAINING_NOISE
    assert f"training noise {TRAINING_NOISE:.3f}" in decision.reason
    images_only = decide(ahead, (4, evidence(RATES, seed=1)), training_noise=0)
    assert images_only.promote
    assert images_only.figures["difference_with_training_noise_low"] == pytest.approx(
        images_only.figures["difference_low"]
    )


def test_a_clearly_better_model_moves_production():
    better = evidence({t: (m + 0.2, f) for t, (m, f) in RATES.items()}, seed=3)
    decision = decide(better, (4, evidence(RATES, seed=1)))
    assert decision.promote and "paired bootstrap" in decision.reason and "v4" in decision.reason
    assert decision.figures["difference_with_training_noise_low"] > 0


def test_training_noise_must_be_a_standard_deviation():
    with pytest.raises(UserError, match="training_noise must be a standard deviation >= 0, got -0.1"):
        decide(evidence(RATES, seed=1), None, training_noise=-0.1)


def test_without_outcomes_on_the_same_images_the_intervals_must_not_overlap():
    production = Evidence({"transfer/score": 0.30, "transfer/score_low": 0.25, "transfer/score_high": 0.35})
    overlapping = Evidence({"transfer/score": 0.38, "transfer/score_low": 0.33, "transfer/score_high": 0.43})
    apart = Evidence({"transfer/score": 0.45, "transfer/score_low": 0.40, "transfer/score_high": 0.50})
    far_apart = Evidence({"transfer/score": 0.60, "transfer/score_low": 0.55, "transfer/score_high": 0.65})
    assert not decide(overlapping, (1, production)).promote
    assert decide(apart, (1, production), training_noise=0).promote
    assert not decide(apart, (1, production)).promote  # apart, but not once each allows for its training's noise
    decision = decide(far_apart, (1, production))
    assert decision.promote and "unpaired" in decision.reason and decision.figures["paired"] == 0.0


def test_missing_scores_keep_production():
    assert not decide(Evidence({}), None).promote
    assert not decide(Evidence({"transfer/score": math.nan, "transfer/score_low": math.nan}), None).promote
    scored = Evidence({"transfer/score": 0.5, "transfer/score_low": 0.4, "transfer/score_high": 0.6})
    decision = decide(scored, (2, Evidence({})))
    assert not decision.promote and "promote by hand" in decision.reason
    before_floors = Evidence({"transfer/score": 0.69})  # the old meaning: a mean accuracy, no interval
    decision = decide(scored, (3, before_floors))
    assert (
        not decision.promote and "without an interval" in decision.reason and "mug registry promote" in decision.reason
    )
