"""The gate's report: validation.json for machines, validation.html (one standalone page) for people.

The page (mug/templates/gate.html) has a pass/fail banner, the checks coloured by outcome with a few offending
samples each, and small inline SVG histograms (no plotting library) with the thresholds drawn on them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from mug.data.gate.checks import RULES, Check, GateResult, format_number
from mug.errors import writing
from mug.reporting import render, write_text_atomic

BINS = 30
_WIDTH, _HEIGHT, _AXIS = 320, 110, 16


def _bounds(check: Check) -> str:
    parts = [f"{key} {value:g}" for key, value in check.threshold.items()]
    return ", ".join(parts)


def _observed(check: Check) -> str | None:
    if check.observed is None:
        return None
    if RULES[check.name].kind == "values":
        return f"{check.observed:.1%} in range"
    return format_number(check.observed)


def histogram_svg(values: np.ndarray, marks: dict[str, float] | None = None) -> str | None:
    """A small SVG histogram of the finite values (None when there are none), with dashed lines at the `marks`
    (label: value) in range. Drawn from numbers and the marks' labels (threshold names) alone."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=BINS, range=(lo, hi))
    peak, bar = int(counts.max()), _WIDTH / BINS
    plot = _HEIGHT - _AXIS
    parts = [f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img">']
    for i, count in enumerate(counts):
        h = plot * count / peak
        parts.append(
            f'<rect x="{i * bar:.1f}" y="{plot - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" fill="#5c7cfa">'
            f"<title>{edges[i]:.4g} to {edges[i + 1]:.4g}: {count}</title></rect>"
        )
    for label, value in (marks or {}).items():
        if lo <= value <= hi:
            x = _WIDTH * (value - lo) / (hi - lo)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{plot}" stroke="#c62828" stroke-dasharray="4 3"/>'
                f'<text x="{min(x + 3, _WIDTH - 40):.1f}" y="10" font-size="10" fill="#c62828">'
                f"{html.escape(label)} {value:g}</text>"
            )
    parts.append(
        f'<line x1="0" x2="{_WIDTH}" y1="{plot}" y2="{plot}" stroke="#999"/>'
        f'<text x="0" y="{_HEIGHT - 3}" font-size="10">{lo:.4g}</text>'
        f'<text x="{_WIDTH}" y="{_HEIGHT - 3}" font-size="10" text-anchor="end">{hi:.4g}</text>'
        f'<text x="{_WIDTH / 2}" y="{_HEIGHT - 3}" font-size="10" text-anchor="middle">peak {peak}</text></svg>'
    )
    return "".join(parts)


def _histograms(result: GateResult) -> list[dict]:
    table = result.table
    limits = {check.name: check.threshold for check in result.checks}
    series = [
        ("caption length (characters)", "caption_chars", "caption_chars"),
        ("caption length (tokens)", "caption_tokens", "caption_tokens"),
        ("image min side (px)", "min_side", "min_side"),
        ("image aspect ratio (width / height)", "aspect_ratio", None),
    ]
    figures = []
    for title, column, check in series:
        if column in table.columns:
            values = table[column].to_numpy(dtype="float64", na_value=np.nan)
            figures.append({"title": title, "svg": histogram_svg(values, limits.get(check))})
    return figures


def render_html(result: GateResult) -> str:
    status = "passed" if result.passed else "failed"
    ran = [check for check in result.checks if not check.skipped]
    failed = sum(not check.passed for check in ran)
    headline = (
        f"Data gate {status.upper()}: {len(ran) - failed} of {len(ran)} checks passed on "
        f"{result.rows:,} samples from {len(result.shards)} shards"
    )
    timing = (
        f"scan {result.scan_s:.1f} s ({result.samples_per_s:,.0f} samples/s, {result.workers} workers), "
        f"great-expectations {result.validate_s:.2f} s"
    )
    return render(
        "gate.html",
        status=status,
        headline=headline,
        timing=timing,
        checks=[{"check": c, "observed": _observed(c), "bounds": _bounds(c)} for c in result.checks],
        unreadable=[shard for shard in result.shards if shard.error is not None],
        shards=len(result.shards),
        histograms=_histograms(result),
    )


def write_report(result: GateResult, out_dir: str | Path) -> tuple[Path, Path]:
    """validation.json and validation.html in `out_dir` (created if missing)."""
    out = Path(out_dir)
    json_path, html_path = out / "validation.json", out / "validation.html"
    with writing("the validation report"):
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
        write_text_atomic(html_path, render_html(result))
    return json_path, html_path
