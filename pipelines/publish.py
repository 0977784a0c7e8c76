"""Compile, upload, run and schedule the pipelines on a Kubeflow Pipelines server (the v2beta1 API).

A compiled pipeline is `dist/pipelines/<name>/<mug version>.yaml`; its description carries the git commit, and
each upload is a new pipeline version named after the version, the commit and the time, so a run in the UI can
be traced back to the code that defined it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import kfp
import kfp_server_api
import urllib3
import yaml
from kfp import compiler

import mug
from mug.errors import UserError
from mug.lineage import git_state

# kfp's names for parameter types (component spec, then compiled IR) -> the Python type a value must have.
_SPEC_TYPES = {"String": "str", "Integer": "int", "Float": "float", "Boolean": "bool", "List": "list", "Dict": "dict"}
_IR_TYPES = {
    "STRING": "str",
    "NUMBER_INTEGER": "int",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "bool",
    "LIST": "list",
    "STRUCT": "dict",
}


@dataclass(frozen=True)
class Param:
    """One declared pipeline parameter: the Python type of its value, its default, whether it must be given."""

    type: str
    default: Any
    required: bool


# ---------------------------------------------------------------------------------------------- pipelines


def registry() -> dict:
    """The known pipelines by name; imported on use, since building them imports every component."""
    from pipelines import PIPELINES

    return PIPELINES


def pipeline_func(name: str):
    pipelines = registry()
    if name not in pipelines:
        raise UserError(f"unknown pipeline {name!r}; known: {', '.join(sorted(pipelines))}")
    return pipelines[name]


def declared_params(name: str) -> dict[str, Param]:
    """The parameters of pipeline `name` as its function declares them (defaults keep their Python types)."""
    inputs = pipeline_func(name).component_spec.inputs or {}
    return {
        key: Param(_SPEC_TYPES[spec.type], spec.default, not spec.optional)
        for key, spec in inputs.items()
        if spec.type in _SPEC_TYPES  # artifact inputs cannot come from the command line
    }


def package_params(path: str | Path) -> dict[str, Param]:
    """The parameters a compiled pipeline package declares (its root inputDefinitions)."""
    spec = _read_package(path)
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {
        key: Param(_IR_TYPES[p["parameterType"]], p.get("defaultValue"), not p.get("isOptional", False))
        for key, p in params.items()
    }


def _read_package(path: str | Path) -> dict:
    try:
        with open(path) as f:
            spec = next(yaml.safe_load_all(f), None)
    except OSError as err:
        raise UserError(f"cannot read the pipeline package {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(spec, dict) or "root" not in spec:
        raise UserError(f"{path} is not a compiled pipeline (no `root` in its first YAML document)")
    return spec


def parse_params(pairs: list[str], declared: dict[str, Param], pipeline: str) -> dict[str, Any]:
    """`key=value` strings -> arguments typed as the pipeline declares them.

    A string parameter keeps its text as given (a DVC revision or md5 of digits stays a string); lists and
    dicts are JSON or YAML (`objectives=["mae","mug"]` or `objectives=[mae, mug]`).
    """
    arguments = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param {pair!r}: expected key=value")
        if key not in declared:
            raise UserError(f"unknown parameter {key!r} for {pipeline}; known: {', '.join(sorted(declared))}")
        arguments[key] = _typed(key, text, declared[key].type)
    missing = sorted(key for key, p in declared.items() if p.required and key not in arguments)
    if missing:
        raise UserError(f"{pipeline} needs a value for {', '.join(missing)} (--param key=value)")
    return arguments


def _typed(key: str, text: str, kind: str) -> Any:
    if kind == "str":
        return text
    parse = {"int": int, "float": float, "bool": lambda t: {"true": True, "false": False}[t.lower()]}
    try:
        value = parse.get(kind, _json_or_yaml)(text)
    except (ValueError, KeyError, yaml.YAMLError):
        value = None
    if not isinstance(value, {"int": int, "float": float, "bool": bool, "list": list, "dict": dict}[kind]):
        raise UserError(f"--param {key}: expected {kind}, got {text!r}")
    return value


def _json_or_yaml(text: str) -> Any:
    """JSON first (so `1e-3` is a number, which YAML 1.1 would read as a string), then YAML."""
    try:
        return json.loads(text)
    except ValueError:
        return yaml.safe_load(text)


# ---------------------------------------------------------------------------------------------- cron

_CRON_FIELDS = (  # name, low, high, names allowed in place of numbers
    ("seconds", 0, 59, None),
    ("minutes", 0, 59, None),
    ("hours", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")


def validate_cron(expr: str) -> str:
    """Check a KFP cron expression (robfig/cron: six fields, seconds first, or a descriptor such as @daily).

    The usual five-field crontab is the mistake this catches: KFP reads "0 3 * * *" as second 0, minute 3.
    """
    expr = expr.strip()
    if expr.startswith("@"):
        if expr in _CRON_DESCRIPTORS or (expr.startswith("@every ") and _GO_DURATION.fullmatch(expr[7:].strip())):
            return expr
        raise UserError(f"cron {expr!r}: unknown descriptor; use {', '.join(_CRON_DESCRIPTORS)} or '@every 1h30m'")
    fields = expr.split()
    if len(fields) == 5:
        raise UserError(f"cron has 5 fields: KFP uses six, seconds first; did you mean '0 {' '.join(fields)}'?")
    if len(fields) != 6:
        raise UserError(
            f"cron {expr!r} has {len(fields)} fields: KFP uses six (seconds minutes hours day-of-month month "
            "day-of-week), e.g. '0 0 3 * * *' for 03:00 daily"
        )
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            _check_cron_item(expr, item, name, low, high, names)
    return " ".join(fields)


def _check_cron_item(expr: str, item: str, name: str, low: int, high: int, names: tuple | None) -> None:
    def bad(why: str) -> UserError:
        return UserError(f"cron {expr!r}: {name} field {item!r} {why}")

    span, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        raise bad("has a step that is not a positive number")
    if span == "*" or (span == "?" and name.startswith("day of")):
        return
    bounds = span.split("-")
    if len(bounds) > 2 or not all(bounds):
        raise bad("is not a number, a range a-b, '*' or a list of these")
    values = []
    for bound in bounds:
        if bound.isdigit():
            values.append(int(bound))
        elif names and bound.upper() in names:
            values.append(names.index(bound.upper()) + low)
        else:
            allowed = f" or {names[0]}-{names[-1]}" if names else ""
            raise bad(f"is not a number{allowed}")
    if not all(low <= v <= high for v in values):
        raise bad(f"is out of range: {name} is {low}-{high}")
    if values[0] > values[-1]:
        raise bad("is a range that runs backwards")


# ---------------------------------------------------------------------------------------------- compile


def git_commit() -> str:
    """The short commit of the code defining the pipelines ("-dirty" if it has uncommitted changes), which the
    pipeline versions' names and descriptions carry."""
    state = git_state(Path(__file__).resolve().parent)
    if state is None:
        return "unknown"
    return state.commit[:7] + ("-dirty" if state.dirty else "")


def description(name: str, commit: str) -> str:
    summary = (pipeline_func(name).description or name).strip()
    return f"{summary} (mug {mug.__version__}, commit {commit})"


def compile_pipeline(name: str, out_dir: str | Path = "dist/pipelines") -> Path:
    """Compile pipeline `name` to OUT_DIR/<name>/<mug version>.yaml, the commit in its description."""
    func = pipeline_func(name)
    text = description(name, git_commit())
    # A described copy: the registered pipeline is module state that other callers share.
    described = copy.copy(func)
    described.component_spec = copy.deepcopy(func.component_spec)
    described.component_spec.description = text
    described.component_spec.implementation.graph.pipeline_info.description = text
    described.description = text

    path = Path(out_dir) / name / f"{mug.__version__}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.yaml")
    compiler.Compiler().compile(described, str(partial), pipeline_name=name)
    os.replace(partial, path)  # a failed compile never leaves a half-written package under the final name
    return path


# ---------------------------------------------------------------------------------------------- the server


class _Client(kfp.Client):
    """kfp.Client whose health check tries once: kfp's tries five times 5 s apart, logging a traceback each."""

    def get_kfp_healthz(self, sleep_duration: int = 5):
        return self.healthzs.healthz_service_get_healthz()


@dataclass(frozen=True)
class Server:
    """Where and how to reach the KFP API. The token is only ever handed to kfp.Client, never printed."""

    host: str
    namespace: str | None = None
    existing_token: str | None = None

    def shown(self) -> str:
        """The host for messages, without any user:password or query in it."""
        parts = urlsplit(self.host)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@contextlib.contextmanager
def connect(server: Server) -> Iterator[kfp.Client]:
    """A client for `server`; an unreachable host or an API error becomes one UserError line naming the host."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="This client only works with", category=FutureWarning)
            client = _Client(
                host=server.host,
                namespace=server.namespace or "kubeflow",
                existing_token=server.existing_token,
                ui_host=server.shown(),  # kfp prints links to the UI: not with a password in them
            )
        yield client
    except urllib3.exceptions.HTTPError as err:
        reason = str(getattr(err, "reason", None) or err).split("): ", 1)[-1]
        raise UserError(f"cannot reach the KFP API at {server.shown()}: {reason}") from err
    except kfp_server_api.ApiException as err:
        if err.status == 0:  # kfp's code for TLS failures
            raise UserError(f"cannot reach the KFP API at {server.shown()}: {err.reason}") from err
        raise UserError(
            f"the KFP API at {server.shown()} answered {err.status} {err.reason}: {_api_message(err)}"
        ) from err


def _api_message(err: kfp_server_api.ApiException) -> str:
    try:
        body = json.loads(err.body)
        text = body.get("message") or body.get("error") or err.body
    except (TypeError, ValueError, AttributeError):
        text = err.body or ""
    return str(text).strip().splitlines()[0][:300] if text else "(no message)"


def _find_pipeline(client: kfp.Client, name: str, namespace: str | None) -> str | None:
    by_name = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    found = client.list_pipelines(filter=by_name, namespace=namespace).pipelines or []
    if len(found) > 1:
        raise UserError(f"{len(found)} pipelines are named {name!r} on the server; rename or delete the extras")
    return found[0].pipeline_id if found else None


def _newest_version(client: kfp.Client, pipeline_id: str, name: str):
    versions = client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", page_size=1).pipeline_versions
    if not versions:
        raise UserError(f"pipeline {name} has no versions on the server: mug pipelines upload {name}")
    return versions[0]


def _uploaded(client: kfp.Client, name: str, server: Server) -> tuple[str, str]:
    """(pipeline id, id of its newest version) of an uploaded pipeline."""
    pipeline_id = _find_pipeline(client, name, server.namespace)
    if pipeline_id is None:
        raise UserError(f"pipeline {name} is not on {server.shown()}: mug pipelines upload {name} --host ...")
    return pipeline_id, _newest_version(client, pipeline_id, name).pipeline_version_id


@dataclass(frozen=True)
class Uploaded:
    pipeline_id: str
    version_id: str
    version_name: str
    created: bool  # a new pipeline, rather than a new version of an existing one


def upload(name: str, server: Server, out_dir: str | Path = "dist/pipelines") -> Uploaded:
    """Compile `name` and upload it: a new pipeline the first time, a new version of it afterwards."""
    package = compile_pipeline(name, out_dir)
    commit = git_commit()
    text = description(name, commit)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    version_name = f"{name}-{mug.__version__}-{commit}-{stamp}"  # KFP wants version names unique per pipeline
    with connect(server) as client:
        pipeline_id = _find_pipeline(client, name, server.namespace)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(
                str(package), pipeline_name=name, description=text, namespace=server.namespace
            ).pipeline_id
            # The server makes the first version itself; its id and name are only in the version list.
            first = _newest_version(client, pipeline_id, name)
            return Uploaded(pipeline_id, first.pipeline_version_id, first.display_name, True)
        version = client.upload_pipeline_version(
            str(package), pipeline_version_name=version_name, pipeline_id=pipeline_id, description=text
        )
        return Uploaded(pipeline_id, version.pipeline_version_id, version_name, False)


def _run_name(name: str) -> str:
    return f"{name} {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S}"


def run(
    name: str,
    server: Server,
    arguments: dict[str, Any],
    experiment: str = "Default",
    package: str | Path | None = None,
    job_name: str | None = None,
) -> str:
    """Start one run of the newest uploaded version of `name` (or of a compiled package); returns the run id."""
    job_name = job_name or _run_name(name)
    with connect(server) as client:
        if package is not None:
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=job_name,
                experiment_name=experiment,
                namespace=server.namespace,
            )
            return result.run_id
        pipeline_id, version_id = _uploaded(client, name, server)
        experiment_id = client.create_experiment(experiment, namespace=server.namespace).experiment_id
        return client.run_pipeline(
            experiment_id, job_name, pipeline_id=pipeline_id, version_id=version_id, params=arguments
        ).run_id


def schedule(
    name: str,
    server: Server,
    cron: str,
    arguments: dict[str, Any],
    experiment: str = "Default",
    pin: bool = False,
    job_name: str | None = None,
) -> tuple[str, str | None]:
    """Create a recurring run of uploaded pipeline `name`; returns (recurring run id, pinned version id or None).

    Pinned runs the newest version as of now, forever; unpinned sends no version id, so every run takes the
    newest version then (KFP >= 2.5). kfp.Client.create_recurring_run cannot express the latter (it wants both
    ids), so the request is built here. One run at a time, and no backfill of runs missed while paused.
    Caching cannot be set here: a run of an uploaded version caches as its compiled tasks say.
    """
    cron = validate_cron(cron)
    with connect(server) as client:
        pipeline_id, newest = _uploaded(client, name, server)
        version_id = newest if pin else None
        experiment_id = client.create_experiment(experiment, namespace=server.namespace).experiment_id
        api = kfp_server_api
        body = api.V2beta1RecurringRun(
            display_name=job_name or f"{name} {'pinned' if pin else 'latest'} {cron}",
            experiment_id=experiment_id,
            mode=api.RecurringRunMode.ENABLE,
            pipeline_version_reference=api.V2beta1PipelineVersionReference(
                pipeline_id=pipeline_id, pipeline_version_id=version_id
            ),
            runtime_config=api.V2beta1RuntimeConfig(parameters=arguments),
            trigger=api.V2beta1Trigger(cron_schedule=api.V2beta1CronSchedule(cron=cron)),
            max_concurrency=1,
            no_catchup=True,
        )
        created = client.recurring_runs.recurring_run_service_create_recurring_run(recurring_run=body)
        return created.recurring_run_id, version_id


def cached_tasks(name: str) -> list[str]:
    """Top-level tasks of `name` that cache: a scheduled retraining should not, as the cache ignores data."""
    tasks = pipeline_func(name).pipeline_spec.root.dag.tasks
    return sorted(task for task, spec in tasks.items() if spec.caching_options.enable_cache)
