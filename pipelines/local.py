"""Run a pipeline on this machine through kfp.local: the same compiled pipeline a cluster runs, each task a
subprocess of this Python environment (no container, no network). Outputs stay under `pipeline_root`."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import sys
import time
import warnings
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mug.errors import UserError

_HEADLINE_PROBES = ("probe_cls/shape", "probe_cls/count", "probe_cls/relation", "probe_cls/colour")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_INNER_FAILED = re.compile(r"Inner task failed: (.+)\.$")


_PROGRESS = re.compile(r" - \w+ - (Running pipeline|Executing task|Task '.*' finished|Pipeline '.*' finished)")


class _Tee(io.TextIOBase):
    """kfp.local prints every task's whole output (executor input, logs, output artifacts). All of it goes to the
    log file; the console gets the task start and finish lines (everything with `verbose`); the last lines stay
    in memory, the only place a failed task's exception is found."""

    def __init__(self, console, log, verbose: bool, keep: int = 400):
        self.console, self.log, self.verbose = console, log, verbose
        self.lines: deque[str] = deque(maxlen=keep)
        self._partial = ""

    def write(self, text: str) -> int:
        self.log.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.lines.append(line)
            if self.verbose or _PROGRESS.search(_ANSI.sub("", line)):
                self.console.write(line + "\n")
        self.console.flush()
        return len(text)


def _exception_line(lines: list[str]) -> str | None:
    """The last traceback's final line ("module.Error: message"), with the module path of our own errors
    dropped: they are sentences for the user."""
    starts = [i for i, line in enumerate(lines) if line.strip() == "Traceback (most recent call last):"]
    if not starts:
        return None
    indent = len(lines[starts[-1]]) - len(lines[starts[-1]].lstrip())
    for line in lines[starts[-1] + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) == indent:
            text = line.strip()
            return re.sub(r"^mug\.[\w.]+: ", "", text)
    return None


def _failed_task(err: RuntimeError) -> str | None:
    match = _INNER_FAILED.search(_ANSI.sub("", str(err)))
    return match and match.group(1).split(" inside ")[0].strip("'")


def _path(artifact) -> str:
    """An artifact's path, relative to the current directory when it lies below it."""
    path = Path(artifact.path)
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _numbers(artifact) -> dict[str, float]:
    from mug.steps import numbers

    return numbers(artifact.metadata)


def _gate_line(gate) -> str:
    m = _numbers(gate.outputs["gate"]) if hasattr(gate, "outputs") else _numbers(gate)
    return f"data gate: passed on {m.get('samples', 0):.0f} samples from {m.get('shards', 0):.0f} shards"


def _training_line(model, training) -> str:
    meta, m = model.metadata, _numbers(training)
    losses = ", ".join(f"{k.removeprefix('final/')} {v:.4f}" for k, v in sorted(m.items()) if k.startswith("final/"))
    return (
        f"trained {meta['objective']}/{meta['preset']} for {meta['steps']:.0f} steps ({m.get('images_per_s', 0):.0f} "
        f"images/s): {losses}\n  data md5 {meta['data_md5']}, revision {meta['data_revision']}, "
        f"code {meta['code_version']}"
    )


def _transfer_line(evaluation, label: str = "transfer") -> str:
    """The score with its interval and verdict against the floor, then each headline probe against its floor."""
    from mug.evaluation.evaluate import TRANSFER_SCORE
    from mug.evaluation.significance import verdict

    m = _numbers(evaluation)
    score, low, high = (m.get(TRANSFER_SCORE + end, math.nan) for end in ("", "_low", "_high"))
    probes = ", ".join(f"{k} {m[k]:.3f} (floor {m[f'floor/{k}']:.3f})" for k in _HEADLINE_PROBES if f"floor/{k}" in m)
    return f"{label}: {TRANSFER_SCORE} {score:.4f} [{low:.4f}, {high:.4f}], {verdict(low, high)}\n  {probes}"


def _registration_line(registered: bool, evaluation, arguments: dict, baseline=None) -> str:
    """The version the run registered and the gate's reason, or why it registered none: the registry and the
    pipeline's own test (`mug.steps.decide_promotion`) are the sources, since a task inside dsl.If cannot be a
    pipeline output."""
    from mug.promotion import TRAINING_NOISE
    from mug.registry import list_versions
    from mug.steps import decide_promotion, evidence

    name, uri = arguments.get("model_name", "mug-encoder"), arguments.get("registry_uri") or None
    if registered:
        newest = list_versions(name, uri)[0]
        return f"registered: {name} v{newest.version} ({', '.join(newest.aliases)}): {newest.tags.get('decision', '')}"
    production = evidence(baseline.metadata, baseline.path) if baseline is not None else None
    noise = arguments.get("training_noise", TRAINING_NOISE)
    reason = decide_promotion(evidence(evaluation.metadata, evaluation.path), uri, name, production, noise)[1]
    return f"not registered: {reason}"


def _summary_pretrain(outputs: dict, arguments: dict, run: Path) -> list[str]:
    return [
        _gate_line(outputs["gate"]),
        _training_line(outputs["model"], outputs["training"]),
        _transfer_line(outputs["evaluation"]),
        _registration_line(outputs["registered"], outputs["evaluation"], arguments),
        f"report (HTML): {_path(outputs['report'])}",
        f"checkpoint: {_path(outputs['model'])}",
        f"data gate report (HTML): {_path(outputs['gate_report'])}",
    ]


def _task_outputs(run: Path, task: str) -> dict[str, Any]:
    """What task `task` of the local run in folder `run` returned, from the executor_output.json kfp.local leaves in
    the task's folder: parameters as values, artifacts with their path and metadata. For tasks inside a dsl.If,
    which cannot be pipeline outputs."""
    written = json.loads((run / task / "executor_output.json").read_text())
    artifacts = {
        name: SimpleNamespace(path=entry["artifacts"][0]["uri"], metadata=entry["artifacts"][0].get("metadata", {}))
        for name, entry in written.get("artifacts", {}).items()
    }
    return artifacts | written.get("parameterValues", {})


def _summary_retrain(outputs: dict, arguments: dict, run: Path) -> list[str]:
    lines = [_gate_line(outputs["gate"]), outputs["status"]]
    if not (run / "pretrain").is_dir():  # nothing new: the run ended after the check
        return lines
    train, new, production = (_task_outputs(run, task) for task in ("pretrain", *_EVALUATIONS))
    registered = _task_outputs(run, "beats-production")["Output"]
    return lines + [
        f"continued from {train['model'].metadata.get('init_from', '?')}",
        _training_line(train["model"], train["metrics"]),
        _transfer_line(new["metrics"], "retrained"),
        _transfer_line(production["metrics"], "production"),
        _registration_line(registered, new["metrics"], arguments, production["metrics"]),
        f"report (HTML): {_path(new['report'])}",
        f"checkpoint: {_path(train['model'])}",
    ]


# The two evaluate_checkpoint tasks of mug-retrain, as the compiler names them: the new model's, then production's.
_EVALUATIONS = ("evaluate-checkpoint", "evaluate-checkpoint-2")


def _summary_benchmark(outputs: dict, arguments: dict, run: Path) -> list[str]:
    table = Path(outputs["table"].path).read_text().rstrip()
    return [_gate_line(outputs["gate"]), table, f"chart: {_path(outputs['chart'])}"]


_SUMMARIES = {"mug-pretrain": _summary_pretrain, "mug-retrain": _summary_retrain, "mug-benchmark": _summary_benchmark}


def run_local(
    name: str, arguments: dict[str, Any], pipeline_root: str | Path = "runs/pipelines", verbose: bool = False
) -> str:
    """Run pipeline `name` with `arguments` here and return a short summary to print. The full log goes to
    `pipeline_root`/logs/NAME-TIME.log (and to stdout with `verbose`). A failed task raises a UserError naming
    the task and its error."""
    from kfp import local

    from pipelines import PIPELINES

    if name not in PIPELINES:
        raise UserError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    pipeline = PIPELINES[name]
    known = pipeline.component_spec.inputs or {}
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise UserError(f"{name} has no parameter {', '.join(unknown)}; known: {', '.join(known)}")
    log_path = Path(pipeline_root) / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    before = set(Path(pipeline_root).glob(f"{name}-*"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    try:
        with log_path.open("w") as log, contextlib.redirect_stdout(tee := _Tee(sys.stdout, log, verbose)):
            with warnings.catch_warnings():
                # Our tasks run in this environment on purpose (the image is the cluster's), and GPU settings
                # are the cluster's too.
                warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
                warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
                outputs = pipeline(**arguments).outputs
    except RuntimeError as err:
        task = _failed_task(err)
        if task is None:
            raise
        reason = _exception_line(list(tee.lines)) or f"see {log_path}"
        raise UserError(f"{name}: task {task} failed: {reason} (full log: {log_path})") from None
    finally:
        local.config.LocalExecutionConfig.instance = None  # the next run (or test) starts from a clean slate
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    lines = [f"{name} finished in {minutes:.0f}m{seconds:02.0f}s; outputs under {pipeline_root}, log {log_path}"]
    (run,) = set(Path(pipeline_root).glob(f"{name}-*")) - before
    return "\n".join(lines + _SUMMARIES[name](outputs, arguments, run)) + "\n"
