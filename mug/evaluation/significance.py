"""How sure a transfer figure is: the transfer score against the random-init floor, bootstrap intervals over the
held-out images, and the paired test the model gate decides with.

A task's outcome is, for every held-out image, whether the model's probe got it right and whether the floor's
(the same architecture at random initialisation, probed the same way) did. Resampling the images of every task
together, with replacement, gives each figure's spread; resampling two models' outcomes with the same draws
pairs them image by image, which cancels most of what the eval set's luck adds to both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mug.errors import UserError

CONFIDENCE = 0.95
RESAMPLES = 2000
_SEED = 0  # the bootstrap's draws are fixed, so metrics.json is a function of the model and the data
OUTCOMES = "outcomes.json"
TRANSFER_SCORE = "transfer/score"  # the metric `transfer_score` fills; what the registry ranks models by


@dataclass
class TaskOutcome:
    """One task's held-out images (their keys) and, per image, whether the model's and the floor's probe were right."""

    keys: list[str]
    model: np.ndarray  # bool [N]
    floor: np.ndarray  # bool [N]


Outcomes = dict[str, TaskOutcome]


def transfer_score(accuracy: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """The share of the headroom above the floor that training closed, pooled over tasks (last axis):
    sum(accuracy - floor) / sum(1 - floor). 0 at the floor, 1 when every task is solved; a task the floor already
    solves adds nothing to either sum, so it cannot inflate the score. NaN when no task has headroom."""
    headroom = (1 - floor).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(headroom > 0, (accuracy - floor).sum(axis=-1) / headroom, np.nan)


def _resampled_means(outcomes: Outcomes, draws: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Model and floor accuracies [RESAMPLES, tasks] over the resampled images of each task."""
    model = np.stack([outcomes[t].model[draws[t]].mean(axis=1) for t in draws], axis=1)
    floor = np.stack([outcomes[t].floor[draws[t]].mean(axis=1) for t in draws], axis=1)
    return model, floor


def _draws(outcomes: Outcomes, resamples: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    return {task: rng.integers(0, len(o.keys), size=(resamples, len(o.keys))) for task, o in outcomes.items()}


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return float(low), float(high)


def summarize(outcomes: Outcomes, resamples: int = RESAMPLES) -> dict[str, float]:
    """Per task: `{task}/accuracy`, `{task}/floor`, `{task}/lift` (accuracy - floor), each accuracy and lift with
    `_low`/`_high`; and `score`, `score_low`, `score_high` (`transfer_score`), all at CONFIDENCE."""
    if not outcomes:
        return {"score": math.nan, "score_low": math.nan, "score_high": math.nan}
    tasks = list(outcomes)
    model, floor = _resampled_means(outcomes, _draws(outcomes, resamples))
    point_model, point_floor = _points(outcomes)
    out: dict[str, float] = {}
    for i, task in enumerate(tasks):
        out[f"{task}/accuracy"] = float(point_model[i])
        out[f"{task}/accuracy_low"], out[f"{task}/accuracy_high"] = _interval(model[:, i])
        out[f"{task}/floor"] = float(point_floor[i])
        out[f"{task}/lift"] = float(point_model[i] - point_floor[i])
        out[f"{task}/lift_low"], out[f"{task}/lift_high"] = _interval(model[:, i] - floor[:, i])
    out["score"] = float(transfer_score(point_model, point_floor))
    out["score_low"], out["score_high"] = _interval(transfer_score(model, floor))
    return out


def verdict(low: float, high: float) -> str:
    """What a score's interval says about the random-init floor (0), in words."""
    if low > 0:
        return "above the random-init floor"
    return "below the random-init floor" if high < 0 else "not distinguishable from the random-init floor"


def comparable(a: Outcomes, b: Outcomes) -> bool:
    """Whether two models' outcomes are on the same held-out images, task by task (so they can be paired)."""
    return bool(a) and a.keys() == b.keys() and all(a[t].keys == b[t].keys for t in a)


@dataclass
class PairedDifference:
    """candidate score - production score on the same images, with its interval and the share of resamples in
    which the candidate does not come out ahead (a one-sided bootstrap p-value)."""

    difference: float
    low: float
    high: float
    p_not_better: float


def paired_difference(candidate: Outcomes, production: Outcomes, resamples: int = RESAMPLES) -> PairedDifference:
    """The paired bootstrap: both models' scores on the same resampled images, each against its own floor."""
    if not comparable(candidate, production):
        raise ValueError("the two models were not evaluated on the same held-out images")
    draws = _draws(candidate, resamples)
    ours = transfer_score(*_resampled_means(candidate, draws))
    theirs = transfer_score(*_resampled_means(production, draws))
    point = _point_score(candidate) - _point_score(production)
    low, high = _interval(ours - theirs)
    return PairedDifference(float(point), low, high, float(np.mean(ours - theirs <= 0)))


def _points(outcomes: Outcomes) -> tuple[np.ndarray, np.ndarray]:
    """Model and floor accuracy per task, on all the held-out images."""
    return np.array([o.model.mean() for o in outcomes.values()]), np.array([o.floor.mean() for o in outcomes.values()])


def _point_score(outcomes: Outcomes) -> float:
    return float(transfer_score(*_points(outcomes)))


def _bits(values: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in values)


def write_outcomes(outcomes: Outcomes, path: str | Path) -> None:
    """outcomes.json: per task the held-out keys and two strings of 0/1, the model's and the floor's hits."""
    data = {t: {"keys": o.keys, "model": _bits(o.model), "floor": _bits(o.floor)} for t, o in outcomes.items()}
    Path(path).write_text(json.dumps({"tasks": data}) + "\n")


def read_outcomes(path: str | Path) -> Outcomes | None:
    """The outcomes written next to an evaluation's metrics, or None where there are none (an older evaluation)."""
    path = Path(path)
    if not path.is_file():
        return None

    def hits(bits: str) -> np.ndarray:
        if set(bits) - {"0", "1"}:
            raise ValueError("hits must be a string of 0 and 1")
        return np.frombuffer(bits.encode("ascii"), dtype=np.uint8) == ord("1")

    try:
        tasks = json.loads(path.read_text())["tasks"]
        outcomes = {t: TaskOutcome(list(o["keys"]), hits(o["model"]), hits(o["floor"])) for t, o in tasks.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path} is not an evaluation's outcomes file ({type(err).__name__}: {err})") from err
    for task, o in outcomes.items():
        if not len(o.keys) == len(o.model) == len(o.floor):
            raise UserError(f"{path}: task '{task}' has {len(o.keys)} keys but {len(o.model)} / {len(o.floor)} hits")
    return outcomes
