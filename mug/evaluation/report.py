"""report.html: one standalone page a person reads instead of metrics.json.

Figures are drawn with matplotlib's object API (no pyplot, so no global backend state) and embedded as base64
PNGs, as are the reconstruction strips and caption thumbnails; the page loads nothing from anywhere. Its layout is
mug/templates/evaluation.html, its style the one every report shares (base.html).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image

from mug.evaluation.results import Evaluation
from mug.evaluation.significance import verdict
from mug.reporting import render

METHODS = ("probe_cls", "probe_mean", "knn_cls", "knn_mean", "zero_shot")
OTHER_METRICS = {
    "caption/perplexity": "exp of the mean token NLL of the eval captions (lower is better)",
    "caption/bleu4": "corpus BLEU-4 of greedy captions against the eval captions (0 to 1)",
    "caption/cider": "CIDEr-D of the same captions (0 to 10)",
    "recon/mse": "the model's reconstruction loss on masked patches (norm-pix targets if trained so)",
}
COLOURS = ("#3b5bdb", "#91a7ff", "#2b8a3e", "#8ce99a", "#e67700")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return _data_uri(buffer.getvalue())


@dataclass(frozen=True)
class Pixels:
    """A small picture as a data URI, shown blown up to `width` x `height` with hard pixel edges (the browser
    scales it)."""

    uri: str
    width: int
    height: int
    alt: str


def pixels(image: Image.Image, scale: int, alt: str) -> Pixels:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    w, h = image.size
    return Pixels(_data_uri(buffer.getvalue()), w * scale, h * scale, alt)


def _tasks(ev: Evaluation) -> list[str]:
    """Label names with results, in report order, then "digits"."""
    return list(ev.outcomes)


def _metric(ev: Evaluation, method: str, task: str, end: str = "") -> float | None:
    """A task's figure: `method` may carry a prefix (`floor/probe_cls`), `end` an interval end (`_low`)."""
    prefix, _, name = method.rpartition("/")
    full = f"{prefix + '/' if prefix else ''}digits/{name}" if task == "digits" else f"{method}/{task}"
    return ev.metrics.get(full + end)


def _accuracy_rows(ev: Evaluation, methods: list[str]) -> list[dict]:
    """Per task: the headline probe with its interval, the floor and the lift over it; then the other `methods`,
    each with its floor (None where it has none, as zero-shot); then the majority-class rate."""
    rows = []
    for task in _tasks(ev):
        lift_low = _metric(ev, "lift/probe_cls", task, "_low")
        rows.append(
            {
                "task": task,
                "probe": _metric(ev, "probe_cls", task),
                "probe_low": _metric(ev, "probe_cls", task, "_low"),
                "probe_high": _metric(ev, "probe_cls", task, "_high"),
                "floor": _metric(ev, "floor/probe_cls", task),
                "lift": _metric(ev, "lift/probe_cls", task),
                "lift_low": lift_low,
                "lift_high": _metric(ev, "lift/probe_cls", task, "_high"),
                "signal": lift_low is not None and lift_low > 0,
                "others": [(_metric(ev, m, task), _metric(ev, "floor/" + m, task)) for m in methods],
                "chance": ev.chance[task],
            }
        )
    return rows


def accuracy_bars(ev: Evaluation) -> Figure:
    """The headline probe per task: a bar with its 95% interval, the floor marked in red and the majority-class
    rate in black, so what pre-training added is the gap between the bar's top and the red mark."""
    tasks = _tasks(ev)
    fig = Figure(figsize=(max(6.0, 1.0 * len(tasks)), 3.4))
    ax = fig.subplots()
    x = np.arange(len(tasks))
    acc = np.array([_metric(ev, "probe_cls", t) for t in tasks], dtype=float)
    low = np.array([_metric(ev, "probe_cls", t, "_low") for t in tasks], dtype=float)
    high = np.array([_metric(ev, "probe_cls", t, "_high") for t in tasks], dtype=float)
    ax.bar(x, acc, 0.6, color=COLOURS[0], label="probe_cls (95% interval)")
    ax.errorbar(x, acc, yerr=[acc - low, high - acc], fmt="none", ecolor="black", capsize=4, linewidth=1)
    floor = [_metric(ev, "floor/probe_cls", t) for t in tasks]
    ax.hlines(floor, x - 0.38, x + 0.38, colors="#c92a2a", linewidth=2.5, label="random-init floor")
    ax.hlines(
        [ev.chance[t] for t in tasks],
        x - 0.38,
        x + 0.38,
        colors="black",
        linestyles="dotted",
        linewidth=1.5,
        label="majority class",
    )
    ax.set_xticks(x, tasks)
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1 accuracy (held-out half)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return fig


def confusion_figure(ev: Evaluation) -> Figure:
    """One small heat map per confusion matrix, rows normalised (each row: where that class's samples went)."""
    names = list(ev.confusion)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.3 * cols, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, name in zip(axes, names, strict=False):
        labels, matrix = ev.confusion[name]["labels"], np.array(ev.confusion[name]["matrix"])
        share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ticks = np.arange(len(labels))
        ax.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(ticks, labels, fontsize=7)
        if len(labels) <= 10:
            for (r, c), count in np.ndenumerate(matrix):
                ink = "white" if share[r, c] > 0.6 else "black"
                if count:
                    ax.text(c, r, count, ha="center", va="center", fontsize=6, color=ink)
        ax.set_title(f"{name}  ({ev.metrics.get(name, float('nan')):.0%})", fontsize=9)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    return fig


def loss_figure(history: list[dict]) -> Figure:
    keys = sorted({k for row in history for k in row if k.startswith("loss")}, key=lambda k: (k != "loss", k))
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    for key in keys:
        points = [(row["step"], row[key]) for row in history if isinstance(row.get(key), int | float)]
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, label=key, linewidth=1.8 if key == "loss" else 1.0)
    if all(row[k] > 0 for row in history for k in keys if isinstance(row.get(k), int | float)):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # labelled 0.5, 1, 2, 5, not 5 x 10^-1
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def render_html(ev: Evaluation) -> str:
    methods = [m for m in METHODS if m != "probe_cls" and any(_metric(ev, m, t) is not None for t in _tasks(ev))]
    strip_scale = max(1, 96 // ev.strips[0][1].height) if ev.strips else 1  # two strips a row on a 1100 px page
    digit_scale = max(1, 64 // ev.digits[0].height) if ev.digits else 1
    score, low, high = (ev.metrics.get(f"transfer/score{end}", math.nan) for end in ("", "_low", "_high"))
    return render(
        "evaluation.html",
        objective=ev.objective,
        checkpoint=ev.checkpoint,
        samples=ev.samples,
        data=" ".join(ev.data),
        digit_samples=ev.digit_samples,
        notes=ev.notes,
        score=score,
        score_low=low,
        score_high=high,
        verdict=verdict(low, high),
        floor_cached=ev.floor_cached,
        methods=methods,
        accuracy=_accuracy_rows(ev, methods),
        accuracy_chart=figure_uri(accuracy_bars(ev)),
        digits=[pixels(digit, digit_scale, "digit") for digit in ev.digits],
        other_metrics=[
            (name, ev.metrics[name], meaning) for name, meaning in OTHER_METRICS.items() if name in ev.metrics
        ],
        confusion_chart=figure_uri(confusion_figure(ev)),
        captions=[
            {"image": pixels(img, 2, ref), "generated": hyp, "reference": ref, "match": hyp.split() == ref.split()}
            for img, hyp, ref in ev.captions
        ],
        strips=[
            (pixels(original, strip_scale, "image"), pixels(strip, strip_scale, "reconstruction strip"))
            for original, strip in ev.strips
        ],
        loss_chart=figure_uri(loss_figure(ev.history)) if ev.history else None,
    )
