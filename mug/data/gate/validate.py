"""The data-validation gate: scan shards, check the sample table with great-expectations against thresholds.

Each threshold key is one expectation in an ephemeral GX context (rates are means of boolean columns); the one
per-shard check, unreadable shards, is counted outside GX and reported the same way. The gate passes when every
check that could run passed. Writing the report (`mug.data.gate.report`) and printing the outcome are the caller's.
"""

from __future__ import annotations

import math
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mug.data.gate.checks import RULES, Check, GateResult
from mug.data.gate.scan import ShardScan, scan_shards
from mug.data.loading.urls import Urls, shard_name
from mug.errors import ConfigError, UserError
from mug.fields import typed

if TYPE_CHECKING:
    import pandas as pd

MAX_EXAMPLES = 5


EXPECTATIONS = {
    "mean": "expect_column_mean_to_be_between",
    "min": "expect_column_min_to_be_between",
    "values": "expect_column_values_to_be_between",
    "rows": "expect_table_row_count_to_be_between",
    "shards": "unreadable_shard_count (per shard, outside GX)",
}


def _check_threshold(name: str, value: Any) -> dict[str, float]:
    """One check's bounds, by the rules every setting follows (`mug.fields`), named `thresholds.NAME.BOUND`."""
    rule, path = RULES[name], f"thresholds.{name}"
    allowed = ", ".join(rule.fields)
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{path} must be a mapping of {allowed}, got {value!r}")
    unknown = sorted(map(str, set(value) - set(rule.fields)))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]} is not a bound of this check; known: {allowed}")
    bounds = {bound: typed(f"{path}.{bound}", number, float) for bound, number in value.items()}
    for bound, number in bounds.items():
        fraction = rule.is_rate or bound == "mostly"
        if number < 0 or (fraction and number > 1):
            raise ConfigError(f"{path}.{bound} must be {'in [0, 1]' if fraction else '>= 0'}, got {number:g}")
    if "min" not in bounds and "max" not in bounds:
        raise ConfigError(f"{path} must set min or max")
    if bounds.get("min", -math.inf) > bounds.get("max", math.inf):
        raise ConfigError(f"{path}.min must be at most its max ({bounds['max']:g}), got {bounds['min']:g}")
    if bounds.get("mostly", 1) == 0:
        raise ConfigError(f"{path}.mostly must be above 0, got 0")
    return {bound: int(n) if isinstance(value[bound], int) else n for bound, n in bounds.items()}


def load_thresholds(
    thresholds: str | Path | dict | None = None, min_side: int | None = None
) -> dict[str, dict[str, float]]:
    """The gate's thresholds: the shipped default, a YAML file or a dict, each of which is the whole gate (a key
    left out is not checked). `min_side` overrides the min side, e.g. with the model's input size."""
    if thresholds is None:
        text = resources.files("mug.data.gate").joinpath("thresholds.yaml").read_text()
        thresholds = yaml.safe_load(text)
    elif isinstance(thresholds, str | Path):
        path = Path(thresholds)
        if not path.is_file():
            raise UserError(f"thresholds file {path} does not exist")
        try:
            thresholds = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise UserError(f"thresholds file {path} is not valid YAML: {err}") from err
        if not isinstance(thresholds, dict):
            raise UserError(f"thresholds file {path} must map check names to bounds")
    unknown = [str(name) for name in thresholds if name not in RULES]
    if unknown:
        raise ConfigError(f"thresholds.{unknown[0]} is not a gate check; known: {', '.join(RULES)}")
    checked = {name: _check_threshold(name, value) for name, value in thresholds.items()}
    if min_side is not None:
        checked["min_side"] = _check_threshold("min_side", {"min": min_side})
    return checked


def _gx_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The table plus the boolean views the rate checks average; a sample without a status is left out of the
    success rate (NaN), not counted as a failure."""
    success = (table["status"] == "success").astype("float64").where(table["status"].notna())
    return table.assign(decode_failed=~table["decodes"], status_success=success)


def _expectation(name: str, bounds: dict[str, float]):
    import great_expectations as gx

    rule, meta = RULES[name], {"check": name}
    lo, hi = bounds.get("min"), bounds.get("max")
    if rule.kind == "rows":
        return gx.expectations.ExpectTableRowCountToBeBetween(min_value=lo, max_value=hi, meta=meta)
    if rule.kind == "mean":
        return gx.expectations.ExpectColumnMeanToBeBetween(column=rule.column, min_value=lo, max_value=hi, meta=meta)
    if rule.kind == "min":
        return gx.expectations.ExpectColumnMinToBeBetween(column=rule.column, min_value=lo, max_value=hi, meta=meta)
    mostly = bounds.get("mostly", 1.0)
    return gx.expectations.ExpectColumnValuesToBeBetween(
        column=rule.column, min_value=lo, max_value=hi, mostly=mostly, meta=meta
    )


def _run_gx(frame: pd.DataFrame, thresholds: dict[str, dict[str, float]]) -> dict[str, Any]:
    """{check name: GX result} for the given checks, validated as one suite over the whole frame."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("shards").add_dataframe_asset("samples")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name="mug_data_gate")
    for name, bounds in thresholds.items():
        suite.add_expectation(_expectation(name, bounds))
    results = {}
    for result in batch.validate(suite, result_format="BASIC").results:
        if result.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"great-expectations could not run {result.expectation_config.type}: {result.exception_info}"
            )
        results[result.expectation_config.meta["check"]] = result
    return results


def _observed(kind: str, result: Any) -> float | None:
    if kind == "values":
        percent = result.result.get("unexpected_percent")
        return None if percent is None else 1 - percent / 100  # the fraction inside the bounds
    value = result.result.get("observed_value")
    return value.item() if hasattr(value, "item") else value  # numpy scalars -> int / float for JSON


def _examples(name: str, check: Check, frame: pd.DataFrame) -> list[dict[str, str]]:
    """A few offending samples of a failed check, so the report points at data and not only at a number."""
    rule = RULES[name]
    column = frame[rule.column]
    lo, hi = check.threshold.get("min"), check.threshold.get("max")
    if rule.kind == "mean":
        bad = column == (0 if lo is not None and check.observed < lo else 1)
    elif rule.kind == "min":
        bad = column < lo
    else:
        bad = ~column.between(-math.inf if lo is None else lo, math.inf if hi is None else hi)
    rows = frame.loc[bad.fillna(False).astype(bool), ["key", "shard", rule.shows]].head(MAX_EXAMPLES)
    return [
        {"key": k, "shard": shard_name(s), "value": str(v) if str(v) else "(empty)"}
        for k, s, v in rows.itertuples(index=False)
    ]


def _check_shards(threshold: dict[str, float], shards: list[ShardScan]) -> Check:
    bad = [shard for shard in shards if shard.error is not None]
    passed = len(bad) <= threshold["max"]
    note = ""
    if bad:
        note = f"{shard_name(bad[0].path)}: {bad[0].error}" + (f"; {len(bad) - 1} more" if len(bad) > 1 else "")
    return Check("unreadable_shards", EXPECTATIONS["shards"], len(bad), threshold, passed, note=note)


def _skip_reason(name: str, frame: pd.DataFrame) -> str | None:
    rule = RULES[name]
    if rule.column is not None and rule.column not in frame.columns:
        return "no tokenizer given"
    if name == "status_success_rate" and len(frame) and frame["status"].isna().all():
        return "no sample has a KEY.json status"
    return None


def validate_shards(
    urls: Urls,
    thresholds: str | Path | dict | None = None,
    tokenizer: Any = None,
    min_side: int | None = None,
    workers: int | None = None,
) -> GateResult:
    """Scan the shards (paths, a brace pattern or a directory) and check them against the thresholds (default:
    the shipped gate). `tokenizer` (a CaptionTokenizer or a tokenizer.json path) enables the token-length check.
    Several shards are scanned by a pool of `workers` processes (default: one per core), so a script calling this
    needs the usual `if __name__ == "__main__":` guard."""
    limits = load_thresholds(thresholds, min_side)
    if isinstance(tokenizer, str | Path):
        from mug.tokenizer import CaptionTokenizer

        tokenizer = CaptionTokenizer.from_file(tokenizer)
    scan = scan_shards(urls, tokenizer=tokenizer, workers=workers)

    start = time.perf_counter()
    frame = _gx_frame(scan.table)
    checks: dict[str, Check] = {}
    for name, bounds in limits.items():
        rule, reason = RULES[name], _skip_reason(name, frame)
        if rule.kind == "shards":
            checks[name] = _check_shards(bounds, scan.shards)
        elif reason is not None:
            checks[name] = Check(name, EXPECTATIONS[rule.kind], None, bounds, True, skipped=True, note=reason)
        elif rule.kind != "rows" and frame.empty:
            checks[name] = Check(name, EXPECTATIONS[rule.kind], None, bounds, False, note="no samples")
    to_run = {name: bounds for name, bounds in limits.items() if name not in checks}
    for name, result in _run_gx(frame, to_run).items() if to_run else ():
        rule = RULES[name]
        observed = _observed(rule.kind, result)
        check = Check(name, result.expectation_config.type, observed, limits[name], bool(result.success))
        if observed is None:
            check.note = "no values"
        if not check.passed and rule.column is not None and observed is not None:
            check.examples = _examples(name, check, frame)
        checks[name] = check
    validate_s = time.perf_counter() - start
    return GateResult(
        [checks[name] for name in limits], scan.table, scan.shards, scan.seconds, validate_s, scan.workers
    )
