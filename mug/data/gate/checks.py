"""The data gate's vocabulary: the rule behind each threshold key, one check's outcome and the gate's result.

A module of its own so the gate (`mug.data.gate.validate`) and its report (`mug.data.gate.report`) both
depend on it instead of on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mug.data.gate.scan import ShardScan


@dataclass(frozen=True)
class Rule:
    """How one threshold key is checked: `kind` picks the expectation, `column` its column in the GX frame,
    `fields` the bounds a threshold may set, and `shows` the column printed for offending samples."""

    kind: str  # "mean" | "min" | "values" | "rows" | "shards"
    column: str | None
    fields: tuple[str, ...]
    shows: str | None = None

    @property
    def is_rate(self) -> bool:
        return self.kind == "mean"


RULES = {
    "samples": Rule("rows", None, ("min", "max")),
    "unreadable_shards": Rule("shards", None, ("max",)),
    "decode_failure_rate": Rule("mean", "decode_failed", ("min", "max"), "decode_error"),
    "empty_caption_rate": Rule("mean", "empty_caption", ("min", "max"), "caption"),
    "duplicate_rate": Rule("mean", "duplicate", ("min", "max"), "sha256"),
    "filename_caption_rate": Rule("mean", "filename_caption", ("min", "max"), "caption"),
    "status_success_rate": Rule("mean", "status_success", ("min", "max"), "status"),
    "min_side": Rule("min", "min_side", ("min",), "min_side"),
    "caption_chars": Rule("values", "caption_chars", ("min", "max", "mostly"), "caption"),
    "caption_tokens": Rule("values", "caption_tokens", ("min", "max", "mostly"), "caption"),
}


def format_number(value: float | None) -> str:
    if value is None:
        return "nothing"
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


@dataclass
class Check:
    name: str
    expectation: str
    observed: float | None
    threshold: dict[str, float]
    passed: bool
    skipped: bool = False
    note: str = ""
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "passed" if self.passed else "failed"

    def failure(self) -> str:
        """One line saying how the observed value missed the threshold."""
        lo, hi = self.threshold.get("min"), self.threshold.get("max")
        if self.observed is None:
            return f"{self.name}: observed nothing ({self.note})"
        if RULES[self.name].kind == "values":
            bounds = f"[{'-inf' if lo is None else format_number(lo)}, {'inf' if hi is None else format_number(hi)}]"
            line = f"{self.name}: observed {format_number(self.observed)} of values in {bounds}"
            return f"{line} < mostly {format_number(self.threshold.get('mostly', 1))}"
        if lo is not None and self.observed < lo:
            line = f"{self.name}: observed {format_number(self.observed)} < min {format_number(lo)}"
        else:
            line = f"{self.name}: observed {format_number(self.observed)} > max {format_number(hi)}"
        return f"{line} ({self.note})" if self.note else line

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expectation": self.expectation,
            "observed": self.observed,
            "threshold": self.threshold,
            "status": self.status,
            "passed": self.passed,
            "note": self.note,
            "examples": self.examples,
        }


@dataclass
class GateResult:
    checks: list[Check]
    table: pd.DataFrame
    shards: list[ShardScan]
    scan_s: float
    validate_s: float
    workers: int

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def rows(self) -> int:
        return len(self.table)

    @property
    def samples_per_s(self) -> float:
        return self.rows / self.scan_s if self.scan_s > 0 else 0.0

    def failures(self) -> list[str]:
        return [check.failure() for check in self.checks if not check.passed]

    def counts(self) -> dict[str, Any]:
        table = self.table
        return {
            "samples": self.rows,
            "shards": len(self.shards),
            "unreadable_shards": sum(shard.error is not None for shard in self.shards),
            "decode_failures": int((~table["decodes"]).sum()),
            "empty_captions": int(table["empty_caption"].sum()),
            "filename_captions": int(table["filename_caption"].sum()),
            "duplicates": int(table["duplicate"].sum()),
            "status": {str(k): int(v) for k, v in table["status"].fillna("(missing)").value_counts().items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [check.to_dict() for check in self.checks],
            "counts": self.counts(),
            "shards": [{"path": s.path, "samples": s.samples, "error": s.error} for s in self.shards],
            "timing": {
                "scan_s": round(self.scan_s, 3),
                "validate_s": round(self.validate_s, 3),
                "samples_per_s": round(self.samples_per_s, 1),
                "workers": self.workers,
            },
        }
