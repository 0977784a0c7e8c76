"""The benchmark's verdict: objectives trained with identical budgets, ranked by transfer score, as a Markdown
table (for the run's page and the README) and a standalone HTML page with a bar chart."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from mug.evaluation.evaluate import TRANSFER_SCORE
from mug.evaluation.report import figure_uri
from mug.reporting import render


def _columns(results: list[dict]) -> list[str]:
    """The score and its interval, then each CLS linear probe any objective has (labels, then digits)."""
    probes = sorted(
        {k for r in results for k in r["metrics"] if k.startswith("probe_cls/") and not k.endswith(("_low", "_high"))}
    )
    digits = ["digits/probe_cls"] if any("digits/probe_cls" in r["metrics"] for r in results) else []
    return [TRANSFER_SCORE, f"{TRANSFER_SCORE}_low", f"{TRANSFER_SCORE}_high", *probes, *digits]


def rank(results: list[dict]) -> list[dict]:
    """`results` ({"objective", "metrics"} each) best first; an objective without a score goes last."""

    def key(result: dict) -> float:
        score = result["metrics"].get(TRANSFER_SCORE, math.nan)
        return -math.inf if math.isnan(score) else score

    return sorted(results, key=key, reverse=True)


def _cell(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"


def markdown_table(results: list[dict]) -> str:
    ranked, columns = rank(results), _columns(results)
    lines = [
        "| rank | objective | " + " | ".join(columns) + " |",
        "|---:|---|" + "---:|" * len(columns),
    ]
    for place, result in enumerate(ranked, 1):
        cells = [_cell(result["metrics"].get(column)) for column in columns]
        lines.append(f"| {place} | {result['objective']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _chart(ranked: list[dict]) -> Figure:
    fig = Figure(figsize=(6, 0.5 + 0.45 * len(ranked)))
    ax = fig.add_subplot()
    names = [r["objective"] for r in ranked][::-1]
    scores = [r["metrics"].get(TRANSFER_SCORE, math.nan) for r in ranked][::-1]
    low = [r["metrics"].get(f"{TRANSFER_SCORE}_low", math.nan) for r in ranked][::-1]
    high = [r["metrics"].get(f"{TRANSFER_SCORE}_high", math.nan) for r in ranked][::-1]
    bars = [0 if math.isnan(s) else s for s in scores]
    spread = [[max(b - lo, 0) if not math.isnan(lo) else 0 for b, lo in zip(bars, low, strict=True)],
              [max(hi - b, 0) if not math.isnan(hi) else 0 for b, hi in zip(bars, high, strict=True)]]  # fmt: skip
    ax.barh(names, bars, xerr=spread, color="#1565c0", ecolor="black", capsize=3)
    for y, (bar, top) in enumerate(zip(bars, high, strict=True)):  # the figure right of the interval's end
        ax.text(bar if math.isnan(top) else max(bar, top), y, f" {_cell(scores[y])}", va="center")
    ax.axvline(0, color="#c92a2a", linewidth=1.5)  # the random-init floor
    ax.set_xlabel(f"{TRANSFER_SCORE} (0 = the random-init floor, 1 = every task solved)")
    ax.set_xlim(min(0.0, *(s for s in scores if not math.isnan(s))) - 0.1, 1.1)
    return fig


def html_page(results: list[dict], budget: str) -> str:
    """The ranking as a standalone page: the chart, then the table of every probe."""
    ranked, columns = rank(results), _columns(results)
    rows = [
        {"place": place, "objective": r["objective"], "cells": [_cell(r["metrics"].get(c)) for c in columns]}
        for place, r in enumerate(ranked, 1)
    ]
    return render(
        "benchmark.html",
        budget=budget,
        chart=figure_uri(_chart(ranked)),
        columns=["rank", "objective", *columns],
        rows=rows,
    )
