"""The transfer score against the floor, its bootstrap intervals, the paired test, the probe's choice of C, and the
random-init floor's cache."""

import numpy as np
import pytest
import torch

from mug.errors import UserError
from mug.evaluation import floor as floor_module
from mug.evaluation.probes import PROBE_CS, choose_c
from mug.evaluation.significance import (
    TaskOutcome,
    comparable,
    paired_difference,
    read_outcomes,
    summarize,
    transfer_score,
    write_outcomes,
)
from tests.conftest import micro_config


def hits(n: int, rate: float, seed: int) -> np.ndarray:
    """`n` per-image hits, about `rate` of them right (independent draws, as two models' errors are)."""
    return np.random.default_rng(seed).random(n) < rate


def outcomes(rates: dict[str, tuple[float, float]], n: int = 2500, seed: int = 0) -> dict[str, TaskOutcome]:
    """Tasks with (model accuracy, floor accuracy) about `rates`; the floor's hits depend on the task only."""
    return {
        task: TaskOutcome([f"{task}-{i}" for i in range(n)], hits(n, model, seed * 100 + i), hits(n, floor, 10_000 + i))
        for i, (task, (model, floor)) in enumerate(rates.items())
    }


def test_transfer_score_is_the_pooled_share_of_the_headroom_closed():
    # shape: 0.2 -> 0.6 closes 0.4 of 0.8; background: solved at random init, adds 0 to both sums.
    assert transfer_score(np.array([0.6, 1.0]), np.array([0.2, 1.0])) == pytest.approx(0.4 / 0.8)
    assert transfer_score(np.array([0.6, 0.5]), np.array([0.2, 0.5])) == pytest.approx(0.4 / 1.3)
    assert transfer_score(np.array([0.1]), np.array([0.2])) == pytest.approx(-0.1 / 0.8)  # worse than random
    assert np.isnan(transfer_score(np.array([1.0]), np.array([1.0])))  # nothing left to learn


def test_a_model_equal_to_its_floor_scores_zero_with_a_zero_interval():
    same = {t: TaskOutcome(o.keys, o.floor, o.floor) for t, o in outcomes({"a": (0.5, 0.3), "b": (0.9, 0.4)}).items()}
    summary = summarize(same)
    assert summary["score"] == summary["score_low"] == summary["score_high"] == 0.0
    assert summary["a/lift_low"] == summary["a/lift_high"] == 0.0


def test_intervals_have_the_binomial_width_and_cover_the_point():
    summary = summarize(outcomes({"shape": (0.7, 0.15)}))
    half = 1.96 * np.sqrt(0.7 * 0.3 / 2500)  # 1.8 points: the eval split's size is chosen for about 2
    assert summary["shape/accuracy_high"] - summary["shape/accuracy_low"] == pytest.approx(2 * half, rel=0.15)
    assert summary["shape/accuracy_low"] < summary["shape/accuracy"] < summary["shape/accuracy_high"]
    assert summary["score_low"] < summary["score"] < summary["score_high"]
    assert summary["score"] == pytest.approx(
        (summary["shape/accuracy"] - summary["shape/floor"]) / (1 - summary["shape/floor"])
    )


def test_the_paired_test_separates_a_better_model_from_a_reseeded_one():
    rates = {"shape": (0.40, 0.14), "count": (0.50, 0.30), "relation": (0.60, 0.50)}
    base, reseeded = outcomes(rates, seed=1), outcomes(rates, seed=2)
    better = outcomes({t: (m + 0.08, f) for t, (m, f) in rates.items()}, seed=3)
    same = paired_difference(reseeded, base)
    assert same.low < 0 < same.high and 0.05 < same.p_not_better < 0.95
    ahead = paired_difference(better, base)
    assert ahead.low > 0 and ahead.p_not_better < 0.025
    assert ahead.low < ahead.difference < ahead.high
    shifted = {t: TaskOutcome(o.keys[1:] + o.keys[:1], o.model, o.floor) for t, o in base.items()}
    assert not comparable(better, shifted)
    with pytest.raises(ValueError, match="same held-out images"):
        paired_difference(better, shifted)


def test_outcomes_round_trip_through_json(tmp_path):
    original = outcomes({"shape": (0.4, 0.1), "digits": (0.9, 0.8)}, n=37)
    write_outcomes(original, tmp_path / "outcomes.json")
    loaded = read_outcomes(tmp_path / "outcomes.json")
    assert list(loaded) == list(original)
    for task, o in original.items():
        assert loaded[task].keys == o.keys
        assert np.array_equal(loaded[task].model, o.model) and np.array_equal(loaded[task].floor, o.floor)
    assert read_outcomes(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "JSONDecodeError"),
        ('{"tasks": {"shape": {"keys": ["a"]}}}', "KeyError"),
        ('{"tasks": {"shape": {"keys": ["a", "b"], "model": "1x", "floor": "10"}}}', "string of 0 and 1"),
        ('{"tasks": {"shape": {"keys": ["a", "b"], "model": "1", "floor": "10"}}}', "2 keys but 1 / 2 hits"),
    ],
)
def test_a_damaged_outcomes_file_is_named_in_one_error(tmp_path, text, message):
    path = tmp_path / "outcomes.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        read_outcomes(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_the_probe_chooses_c_on_a_validation_part_of_the_training_data():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(2000, 4))
    labels = (clean[:, 0] > 0).astype(str)  # separable: strong regularisation only costs accuracy
    assert choose_c(clean, labels) >= 1.0
    noise = rng.normal(size=(200, 8))
    assert choose_c(noise, rng.integers(0, 2, 200).astype(str)) in PROBE_CS


def test_the_floor_is_seeded_and_leaves_the_global_rng_alone():
    cfg = micro_config("mae")
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = floor_module.random_init(cfg, torch.device("cpu"))
    after = torch.rand(3)
    b = floor_module.random_init(cfg, torch.device("cpu"))
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_the_floor_is_computed_once_per_config_and_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MUG_CACHE_DIR", str(tmp_path))
    cfg, keys = micro_config("mae"), np.array(["b", "a"])
    calls, shards = [], {"a": 1.0, "b": 2.0}  # what the eval shards hold now: key -> feature

    def compute(model):
        calls.append(model)
        return {"keys": np.array(list(shards)), "cls": np.array([[v] for v in shards.values()])}, {
            "cls": np.ones((1, 1))
        }

    first = floor_module.floor_features(cfg, ["shards"], None, 0, torch.device("cpu"), compute, keys)
    again = floor_module.floor_features(cfg, ["shards"], None, 0, torch.device("cpu"), compute, keys)
    assert len(calls) == 1 and not first[2] and again[2]
    assert again[0]["cls"].ravel().tolist() == [2.0, 1.0]  # in the order of the evaluated model's keys
    other = micro_config("mae", encoder={"depth": 3})
    floor_module.floor_features(other, ["shards"], None, 0, torch.device("cpu"), compute, keys)
    floor_module.floor_features(cfg, ["other-shards"], None, 0, torch.device("cpu"), compute, keys)
    assert len(calls) == 3
    # Samples the cached entry never saw: computed again.
    shards["c"] = 3.0
    new = floor_module.floor_features(cfg, ["shards"], None, 0, torch.device("cpu"), compute, np.array(["c", "a"]))
    assert len(calls) == 4 and new[0]["cls"].ravel().tolist() == [3.0, 1.0]
