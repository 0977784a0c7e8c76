"""A run's history: the logged rows (step, losses, lr, ...) as JSON lines in OUT/history.jsonl and in each
checkpoint. Read by training (to resume), evaluation (to chart the losses) and the reports, so it lives apart from
all of them."""

from __future__ import annotations

import json
from pathlib import Path

from mug.checkpoint import CheckpointError, existing_file

HISTORY = "history.jsonl"


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in history))


def read_history(path: Path) -> list[dict[str, float]]:
    """The logged rows; a line that does not parse (a run killed mid-write) is skipped. A file that is not text
    (rows are ASCII JSON) is another file: a CheckpointError names it."""
    if not existing_file(path):
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path} is not a history of JSON lines: it is not text ({err.reason})") from err
    lines = text.splitlines()
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    if not rows and len(lines) > 1:  # one cut-off line is a run killed mid-write; more is another format
        raise CheckpointError(f"{path} is not a mug history: none of its {len(lines)} lines is a JSON row with a step")
    return rows
