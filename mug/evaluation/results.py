"""An evaluation's results: what `run_evaluation` measures and the report and metrics.json show. A module of its
own so the evaluation and its report both depend on it instead of on each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from mug.evaluation.significance import Outcomes


@dataclass
class Evaluation:
    """Everything the report shows."""

    checkpoint: str
    objective: str
    data: list[str]
    samples: int
    digit_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)  # per label and "digits": majority class on the test half
    outcomes: Outcomes = field(default_factory=dict)  # per task: the CLS probe's hits, the model's and the floor's
    floor_cached: bool = False
    notes: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    strips: list[tuple[Image.Image, Image.Image]] = field(default_factory=list)  # (original, strip)
    digits: list[Image.Image] = field(default_factory=list)  # one image per digit, as the model sees it
    captions: list[tuple[Image.Image, str, str]] = field(default_factory=list)
