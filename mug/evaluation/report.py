"""report.html: one standalone page a person reads instead of metrics.json.

Figures are drawn with matplotlib's object API (no pyplot, so no global backend state) and embedded as base64
PNGs, as are the reconstruction strips and caption thumbnails; the page loads nothing from anywhere. The layout
and style are the data gate's report's (`mug.data.report`).
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image

from mug.evaluation.results import Evaluation
from mug.evaluation.significance import verdict
from mug.reporting import STYLE

METHODS = ("probe_cls", "probe_mean", "knn_cls", "knn_mean", "zero_shot")
OTHER_METRICS = {
    "caption/perplexity": "exp of the mean token NLL of the eval captions (lower is better)",
    "caption/bleu4": "corpus BLEU-4 of greedy captions against the eval captions (0 to 1)",
    "caption/cider": "CIDEr-D of the same captions (0 to 10)",
    "recon/mse": "the model's reconstruction loss on masked patches (norm-pix targets if trained so)",
}
COLOURS = ("#3b5bdb", "#91a7ff", "#2b8a3e", "#8ce99a", "#e67700")
_EXTRA_STYLE = """
h1 { font-size: 1.5em; margin-bottom: 0.2em; } .plot { max-width: 100%; }
img.pixels { image-rendering: pixelated; } table.narrow { width: auto; } td.best { font-weight: 700; }
.strips { display: flex; flex-wrap: wrap; gap: 10px 28px; } .strips figure { display: flex; gap: 10px; }
.digits { display: flex; gap: 4px; margin-bottom: 1em; }
td.caption { font-family: ui-monospace, monospace; font-size: 0.9em; } tr.match td.caption { color: #2e7d32; }
.note { background: #fff8e1; padding: 0.5em 0.8em; border-radius: 4px; } p.headline { font-size: 1.2em; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return _data_uri(buffer.getvalue())


def image_tag(image: Image.Image, scale: int, alt: str) -> str:
    """An <img> of a small picture blown up `scale` times with hard pixel edges (the browser scales it)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    w, h = image.size
    uri = _data_uri(buffer.getvalue())
    return f'<img class="pixels" src="{uri}" width="{w * scale}" height="{h * scale}" alt="{html.escape(alt)}">'


def _tasks(ev: Evaluation) -> list[str]:
    """Label names with results, in report order, then "digits"."""
    return list(ev.outcomes)


def _metric(ev: Evaluation, method: str, task: str, end: str = "") -> float | None:
    """A task's figure: `method` may carry a prefix (`floor/probe_cls`), `end` an interval end (`_low`)."""
    prefix, _, name = method.rpartition("/")
    full = f"{prefix + '/' if prefix else ''}digits/{name}" if task == "digits" else f"{method}/{task}"
    return ev.metrics.get(full + end)


def _percent(value: float | None) -> str:
    return "&mdash;" if value is None or math.isnan(value) else f"{value:.1%}"


def _with_floor(ev: Evaluation, method: str, task: str) -> str:
    """A method's accuracy, and its floor's in brackets where the floor has one (zero-shot has none)."""
    floor = _metric(ev, "floor/" + method, task)
    return _percent(_metric(ev, method, task)) + ("" if floor is None else f" <small>({_percent(floor)})</small>")


def accuracy_table(ev: Evaluation) -> str:
    """Per task: the headline probe with its interval, the floor and the lift over it; then the other methods,
    each with its floor in brackets; then the majority-class rate."""
    methods = [m for m in METHODS if m != "probe_cls" and any(_metric(ev, m, t) is not None for t in _tasks(ev))]
    head = "".join(f"<th>{m}{'' if m == 'zero_shot' else '<br><small>(floor)</small>'}</th>" for m in methods)
    rows = []
    for task in _tasks(ev):
        acc = _metric(ev, "probe_cls", task)
        low, high = _metric(ev, "probe_cls", task, "_low"), _metric(ev, "probe_cls", task, "_high")
        lift = (_metric(ev, "lift/probe_cls", task), _metric(ev, "lift/probe_cls", task, "_low"))
        lift_high = _metric(ev, "lift/probe_cls", task, "_high")
        signal = lift[1] is not None and lift[1] > 0
        headline = (
            f'<td class="num"><b>{_percent(acc)}</b> <small>[{_percent(low)}, {_percent(high)}]</small></td>'
            f'<td class="num">{_percent(_metric(ev, "floor/probe_cls", task))}</td>'
            f'<td class="num{" best" * signal}">{"+" if (lift[0] or 0) >= 0 else ""}{_percent(lift[0])} '
            f"<small>[{_percent(lift[1])}, {_percent(lift_high)}]</small></td>"
        )
        others = "".join(f'<td class="num">{_with_floor(ev, m, task)}</td>' for m in methods)
        rows.append(
            f'<tr><td><b>{html.escape(task)}</b></td>{headline}{others}<td class="num">{ev.chance[task]:.1%}</td></tr>'
        )
    return (
        "<table><tr><th>task</th><th>probe_cls [95% interval]</th><th>floor</th><th>lift [95% interval]</th>"
        f"{head}<th>majority class</th></tr>{''.join(rows)}</table>"
    )


def score_paragraph(ev: Evaluation) -> str:
    """The transfer score in one sentence, with what it means."""
    score = ev.metrics.get("transfer/score", math.nan)
    low, high = ev.metrics.get("transfer/score_low", math.nan), ev.metrics.get("transfer/score_high", math.nan)
    return (
        f'<p class="headline">transfer/score <b>{score:.3f}</b> [{low:.3f}, {high:.3f}]: {verdict(low, high)}.</p>'
        "<p class='meta'>The share of the headroom above the random-init floor that pre-training closed, pooled "
        "over the CLS linear probes of every task: sum(accuracy &minus; floor) / sum(1 &minus; floor). 0 is the same "
        "architecture at random initialisation, 1 every task solved; a task the floor already solves adds nothing. "
        "The interval is a 95% bootstrap over the held-out images. The floor is the same architecture with weights "
        f"drawn from a fixed seed, probed the same way{' (taken from the cache)' if ev.floor_cached else ''}.</p>"
    )


def other_metrics_table(ev: Evaluation) -> str:
    rows = "".join(
        f'<tr><td><code>{name}</code></td><td class="num">{ev.metrics[name]:.4g}</td><td>{meaning}</td></tr>'
        for name, meaning in OTHER_METRICS.items()
        if name in ev.metrics
    )
    if not rows:
        return ""
    return (
        "<h2>Captions and reconstruction</h2>"
        f'<table class="narrow"><tr><th>metric</th><th>value</th><th>what it is</th></tr>{rows}</table>'
    )


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


def _captions_section(ev: Evaluation) -> str:
    if not ev.captions:
        return ""
    rows = "".join(
        f'<tr class="{"match" if hyp.split() == ref.split() else ""}"><td>{image_tag(img, 2, ref)}</td>'
        f'<td class="caption">{html.escape(hyp) or "<i>(empty)</i>"}</td>'
        f'<td class="caption">{html.escape(ref)}</td></tr>'
        for img, hyp, ref in ev.captions
    )
    return (
        "<h2>Captions</h2><p class='meta'>Greedy captions from BOS, read from a seeded masked encoding (the "
        "training mask ratio); green where they equal the reference.</p>"
        f"<table><tr><th>image</th><th>generated</th><th>reference</th></tr>{rows}</table>"
    )


def _strips_section(ev: Evaluation) -> str:
    if not ev.strips:
        return ""
    scale = max(1, 96 // ev.strips[0][1].height)  # two strips a row on a 1100 px page
    figures = "".join(
        f"<figure>{image_tag(original, scale, 'image')}{image_tag(strip, scale, 'reconstruction strip')}</figure>"
        for original, strip in ev.strips
    )
    return (
        "<h2>Reconstructions</h2><p class='meta'>image | masked input | masked + reconstruction | reconstruction "
        f"(seeded masks at the training ratio)</p><div class='strips'>{figures}</div>"
    )


def _digits_row(ev: Evaluation) -> str:
    if not ev.digits:
        return ""
    scale = max(1, 64 // ev.digits[0].height)
    images = "".join(image_tag(digit, scale, "digit") for digit in ev.digits)
    return f"<p class='meta'>The digits as the encoder sees them:</p><div class='digits'>{images}</div>"


def render_html(ev: Evaluation) -> str:
    title = f"Evaluation of a '{ev.objective}' checkpoint"
    meta = (
        f"checkpoint <code>{html.escape(ev.checkpoint)}</code>; {ev.samples:,} eval samples from "
        f"<code>{html.escape(' '.join(ev.data))}</code>; {ev.digit_samples:,} digit images"
    )
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in ev.notes)
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{STYLE}{_EXTRA_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f'<p class="meta">{meta}</p>{notes}',
        "<h2>Transfer against the random-init floor</h2>",
        score_paragraph(ev),
        "<h2>Frozen-encoder accuracy</h2><p class='meta'>Each task: a seeded 50/50 stratified split; linear probe "
        "(logistic regression on standardised features, C chosen on a fifth of the training half) and kNN (cosine, "
        "k = 20, T = 0.07) on the CLS token and on the mean patch token of the unmasked image; the same on the "
        "random-init model's features (the floor). Intervals: 95% bootstrap over the held-out images.</p>",
        accuracy_table(ev),
        f'<img class="plot" src="{figure_uri(accuracy_bars(ev))}" alt="accuracy per task">',
        _digits_row(ev),
        other_metrics_table(ev),
        "<h2>Confusion matrices</h2>",
        f'<img class="plot" src="{figure_uri(confusion_figure(ev))}" alt="confusion matrices">',
        _captions_section(ev),
        _strips_section(ev),
        "<h2>Training loss</h2>",
        f'<img class="plot" src="{figure_uri(loss_figure(ev.history))}" alt="training loss">'
        if ev.history
        else "<p>no training history (the checkpoint has no history.jsonl)</p>",
        "</body></html>\n",
    ]
    return "".join(parts)
