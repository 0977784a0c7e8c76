"""The model registry: named, versioned models with aliases, embedded in a sqlite file by default.

A registration records a checkpoint (weights, config, tokenizer, history) and a MODEL_CARD.md as the artifacts of an
MLflow run (which also holds the metrics and lineage, so `mlflow ui --backend-store-uri sqlite:///runs/registry/
mlflow.db` shows them), then creates a model version from that run. `candidate` always moves to the new version;
`production` only when the model gate (`mug.promotion`) says the new one is better beyond the noise: above its
random-init floor and ahead of production on the same held-out images (a paired bootstrap over the per-image
outcomes stored with each version), so neither a worse model nor a lucky seed goes live.

For a sqlite registry every operation holds an exclusive lock on a `.lock` file next to the database: two processes
registering at once then get distinct versions, the read-compare-move of `production` cannot interleave, and MLflow's
schema migrations (not safe to run twice at once) happen once. A server URI ($MUG_REGISTRY_URI=http://...) numbers
versions itself but has no such lock for the production decision.

This module imports no torch, so listing the registry is quick; mlflow and wandb are imported where used.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mug.errors import UserError
from mug.evaluation.significance import OUTCOMES, Outcomes, read_outcomes, write_outcomes
from mug.promotion import SCORE, TRAINING_NOISE, Decision, Evidence, decide

DEFAULT_MODEL_NAME = "mug-encoder"
CANDIDATE, PRODUCTION = "candidate", "production"
CARD = "MODEL_CARD.md"
# What `mug pretrain` writes to OUT/model (the names of mug.checkpoint and mug.train.state, which import torch).
REQUIRED_FILES = ("model.safetensors", "config.json")
OPTIONAL_FILES = ("tokenizer.json", "history.jsonl")
ARTIFACT_PATH = "model"
LINEAGE_PREFIX = "lineage."
SQLITE = "sqlite:///"


@dataclass
class Registration:
    name: str
    version: int
    aliases: list[str]
    promoted: bool
    reason: str
    score: float
    production_version: int | None
    production_score: float | None
    model_uri: str


@dataclass
class VersionInfo:
    version: int
    aliases: list[str]
    score: float
    created: datetime
    run_id: str
    tags: dict[str, str]


def default_registry_uri() -> str:
    """$MUG_REGISTRY_URI, else a sqlite file under runs/registry of the working directory (artifacts beside it)."""
    return os.environ.get("MUG_REGISTRY_URI") or f"{SQLITE}{Path('runs/registry/mlflow.db').resolve()}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len(SQLITE) :].split("?")[0]) if uri.startswith(SQLITE) else None


class NoRegistry(UserError):
    """A sqlite registry whose database does not exist yet (nothing was ever registered there)."""


@contextmanager
def _open(uri: str | None, create: bool = False) -> Iterator:
    """An MlflowClient for `uri`, with the registry's lock held for the whole block (see the module docstring).
    Only a registration creates a sqlite registry: looking in the wrong directory should not leave one behind."""
    uri = uri or default_registry_uri()
    db = _sqlite_path(uri)
    if db is not None and not create and not db.is_file():
        raise NoRegistry(f"there is no model registry at {db} (register a model first, or pass --uri)")
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "a") if db is not None else nullcontext() as lock:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        # Creating the database logs each migration step at INFO, a database error is logged with its traceback
        # before MLflow raises it (`_writing_to` names it in one line), and every download draws a progress bar.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        except MlflowException as err:
            raise UserError(f"cannot open the model registry {uri}: {_first_line(err)}") from err
        yield client


@contextmanager
def _writing_to(uri: str | None) -> Iterator[None]:
    """A registry that cannot take a write (a full disk, no permission, a file where its folder should be) is
    the place's fault: one UserError naming the registry and the cause. register_model leaves no half-recorded
    version behind, so production stays where it was. Other MLflow errors pass through untouched."""
    where = uri or default_registry_uri()
    try:
        yield
    except Exception as err:
        fault = _storage_fault(err)
        if fault is None:
            raise
        place = f" ({fault.filename})" if isinstance(fault, OSError) and fault.filename else ""
        cause = fault.strerror if isinstance(fault, OSError) and fault.strerror else _first_line(fault)
        raise UserError(f"could not write the model registry {where}{place}: {cause}") from err


def _storage_fault(err: BaseException | None) -> BaseException | None:
    """The OSError or database OperationalError behind `err` (MLflow wraps the latter), if there is one."""
    from sqlalchemy.exc import OperationalError  # mlflow's database layer

    while err is not None:
        if isinstance(err, OSError | OperationalError):
            return err
        err = err.__cause__
    return None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _score(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _aliases_by_version(client, name: str) -> dict[int, list[str]] | None:
    """{version: aliases} of model `name`, or None when there is no such model. Search results carry no aliases
    (MLflow leaves them out for speed), the registered model does."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    by_version: dict[int, list[str]] = {}
    for alias, version in sorted(model.aliases.items()):
        by_version.setdefault(int(version), []).append(alias)
    return by_version


def _production(client, name: str) -> tuple[int, float] | None:
    versions = [v for v, aliases in (_aliases_by_version(client, name) or {}).items() if PRODUCTION in aliases]
    if not versions:
        return None
    return versions[0], _score(client.get_model_version(name, str(versions[0])).tags.get(SCORE))


def production_score(name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> tuple[int, float] | None:
    """(version, score) of the version holding `production` (score NaN if it has none), or None if none does."""
    try:
        with _open(uri) as client:
            return _production(client, name)
    except NoRegistry:
        return None


def production_lineage(name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> tuple[int, dict[str, str]] | None:
    """(version, lineage) of the version holding `production` (its `lineage.*` tags, prefix dropped), or None."""
    try:
        with _open(uri) as client:
            production = _production(client, name)
            if production is None:
                return None
            tags = client.get_model_version(name, str(production[0])).tags
    except NoRegistry:
        return None
    return production[0], _lineage(tags)


def version_lineage(version: int, name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> dict[str, str]:
    """The lineage a version was registered with (its `lineage.*` tags, prefix dropped)."""
    with _open(uri) as client:
        return _lineage(_version(client, name, version).tags)


def _lineage(tags: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix(LINEAGE_PREFIX): v for k, v in tags.items() if k.startswith(LINEAGE_PREFIX)}


def _read_metadata(checkpoint: Path) -> dict:
    if not checkpoint.is_dir():
        raise UserError(f"checkpoint directory {checkpoint} does not exist")
    for file in REQUIRED_FILES:
        if not (checkpoint / file).is_file():
            raise UserError(f"checkpoint {checkpoint} has no {file}: only a model directory can be registered")
    try:
        return json.loads((checkpoint / "config.json").read_text()).get("metadata", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise UserError(f"checkpoint {checkpoint}: config.json is not a checkpoint config ({err})") from err


def _files(checkpoint: Path) -> list[Path]:
    return [checkpoint / f for f in REQUIRED_FILES + OPTIONAL_FILES if (checkpoint / f).is_file()]


def _transfer_rows(metrics: dict[str, float]) -> list[str]:
    """Per task with a CLS probe: accuracy with its interval, the random-init floor, and the lift over it."""
    rows = []
    headline = [k for k in metrics if k.startswith("probe_cls/") or k == "digits/probe_cls"]
    for name in sorted(k for k in headline if not k.endswith(("_low", "_high"))):
        acc, low, high = (metrics.get(name + end, math.nan) for end in ("", "_low", "_high"))
        lift, lift_low, lift_high = (metrics.get(f"lift/{name}{end}", math.nan) for end in ("", "_low", "_high"))
        floor = metrics.get(f"floor/{name}", math.nan)
        interval = f"{lift:+.3f} [{lift_low:+.3f}, {lift_high:+.3f}]"
        rows.append(f"| {name} | {acc:.3f} [{low:.3f}, {high:.3f}] | {floor:.3f} | {interval} |")
    return rows


def _is_detail(key: str) -> bool:
    """Figures the transfer table already shows (intervals, floors, lifts), left out of the plain metric list."""
    return key.startswith(("floor/", "lift/")) or key.endswith(("_low", "_high"))


def reproduce_command(name: str, version: int, uri: str | None = None) -> str:
    """The command that re-runs a version's training from its lineage and checks the result (`mug.reproduce`)."""
    named = "" if name == DEFAULT_MODEL_NAME else f" --name {name}"
    return f"mug registry reproduce {version}{named} --uri {uri or default_registry_uri()}"


def model_card(
    name: str,
    metadata: dict,
    metrics: dict[str, float],
    lineage: dict[str, str],
    decision: Decision,
    files: list[str],
    reproduce: str,
) -> str:
    """MODEL_CARD.md: what the model is, how good it is, what the gate decided, where it came from and the command
    `reproduce` that re-runs its training, readable without MLflow."""
    train = metadata.get("train", {})
    what = f"A `{train.get('objective', '?')}` encoder, preset `{train.get('preset', '?')}`"
    steps = metadata.get("step", train.get("steps"))
    score = [metrics.get(SCORE + end, math.nan) for end in ("", "_low", "_high")]
    rows = [
        f"| {key} | {value:.4f} |" for key, value in sorted(metrics.items()) if not _is_detail(key) and key != SCORE
    ]
    return "\n".join(
        [
            f"# {name}",
            "",
            f"{what}, trained for {steps} steps; registered {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
            "",
            f"## Transfer: **{SCORE} {score[0]:.4f}** [{score[1]:.4f}, {score[2]:.4f}] (95% interval)",
            "",
            "The share of the headroom above the random-init floor that pre-training closed, pooled over the CLS",
            "linear probes: 0 is the same architecture at random initialisation, 1 every task solved.",
            "",
            "| task | accuracy [95% interval] | floor | lift [95% interval] |",
            "|---|---|---|---|",
            *_transfer_rows(metrics),
            "",
            "## Promotion",
            "",
            decision.reason + ".",
            "",
            "## Metrics",
            "",
            "| metric | value |",
            "|---|---|",
            *rows,
            "",
            "## Lineage",
            "",
            "| | |",
            "|---|---|",
            *(f"| {key} | `{value}` |" for key, value in sorted(lineage.items())),
            "",
            "## Reproduce",
            "",
            "Re-run the training from this lineage (the same data revision, config, tokenizer and seed) and compare:",
            "",
            f"    {reproduce}",
            "",
            "## Files",
            "",
            f"{', '.join(files)}: load the downloaded folder with `mug.checkpoint.load_checkpoint(folder)`.",
            "",
        ]
    )


def register_model(
    checkpoint_dir,
    metrics: dict[str, float],
    lineage: dict[str, str],
    name: str = DEFAULT_MODEL_NAME,
    uri: str | None = None,
    outcomes: Outcomes | None = None,
    baseline: Evidence | None = None,
    training_noise: float = TRAINING_NOISE,
) -> Registration:
    """Record `checkpoint_dir` as a new version of `name` with its eval `metrics` and per-image `outcomes`, move
    `candidate` to it, and `production` if the model gate (`mug.promotion.decide`) says it is better than
    production: than `baseline` (production evaluated next to this model on the same eval data, in a retraining
    run) when given, else than the evaluation stored with production; `training_noise` is the gate's allowance for
    the spread between re-seeded trainings (`mug.promotion`).

    The lineage keys (data revision/md5, pipeline run, ...) are the caller's; the checkpoint's code_version is added
    when the caller gives none. A failure after the version was created deletes it again, so no half-recorded
    version is left for `production` to move to.
    """
    checkpoint = Path(checkpoint_dir)
    metadata = _read_metadata(checkpoint)
    metrics = {key: float(value) for key, value in metrics.items()}
    lineage = {"code_version": str(metadata.get("code_version", "unknown"))} | {k: str(v) for k, v in lineage.items()}
    candidate = Evidence(metrics, outcomes)
    with _writing_to(uri), _open(uri, create=True) as client, tempfile.TemporaryDirectory() as tmp:
        _ensure_model(client, name)
        production = _production(client, name)
        incumbent = None
        if production is not None:
            incumbent = (production[0], baseline or _evidence(client, name, production[0], Path(tmp)))
        decision = decide(candidate, incumbent, training_noise)
        run_id = _log_run(
            client, name, checkpoint, metadata, metrics, lineage, outcomes, Path(tmp), _artifact_root(uri)
        )
        version = None
        try:
            gate = {f"gate.{k}": repr(v) for k, v in decision.figures.items()}
            tags = {LINEAGE_PREFIX + k: v for k, v in lineage.items()} | {k: repr(v) for k, v in metrics.items()}
            version = int(
                client.create_model_version(
                    name,
                    f"runs:/{run_id}/{ARTIFACT_PATH}",
                    run_id,
                    tags=tags | gate | {"decision": decision.reason},
                    await_creation_for=0,
                ).version
            )
            client.set_tag(run_id, "mlflow.runName", f"{name} v{version}")
            # The card names the version in its reproduce command, so it is written once the number exists.
            files = [p.name for p in _files(checkpoint)]
            card = model_card(name, metadata, metrics, lineage, decision, files, reproduce_command(name, version, uri))
            (Path(tmp) / CARD).write_text(card)
            client.log_artifact(run_id, str(Path(tmp) / CARD), ARTIFACT_PATH)
            client.update_model_version(name, str(version), description=card)
            aliases = [CANDIDATE] + ([PRODUCTION] if decision.promote else [])
            for alias in aliases:  # production last: a failure before it leaves production where it was
                client.set_registered_model_alias(name, alias, str(version))
        except BaseException:
            if version is not None:
                client.delete_model_version(name, str(version))
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id)
    return Registration(
        name=name,
        version=version,
        aliases=aliases,
        promoted=decision.promote,
        reason=decision.reason,
        score=_score(metrics.get(SCORE)),
        production_version=production[0] if production else None,
        production_score=production[1] if production else None,
        model_uri=f"models:/{name}/{version}",
    )


def _evidence(client, name: str, version: int, tmp: Path) -> Evidence:
    """What the registry kept of a version's evaluation: its metrics (tags) and per-image outcomes, if stored."""
    from mlflow.exceptions import MlflowException

    stored = client.get_model_version(name, str(version))
    metrics = {k: v for k, v in ((k, _score(v)) for k, v in stored.tags.items()) if not math.isnan(v)}
    try:
        path = client.download_artifacts(stored.run_id, f"{ARTIFACT_PATH}/{OUTCOMES}", str(tmp))
    except (MlflowException, OSError):
        return Evidence(metrics)  # registered before outcomes were kept: the gate falls back to intervals
    return Evidence(metrics, read_outcomes(path))


def production_evidence(name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> tuple[int, Evidence] | None:
    """(version, evidence) of the version holding `production`, or None if none does."""
    try:
        with _open(uri) as client, tempfile.TemporaryDirectory() as tmp:
            production = _production(client, name)
            return None if production is None else (production[0], _evidence(client, name, production[0], Path(tmp)))
    except NoRegistry:
        return None


def _artifact_root(uri: str | None) -> str | None:
    """Artifacts of a sqlite registry live beside the database; a server decides for itself."""
    db = _sqlite_path(uri or default_registry_uri())
    return (db.parent / "artifacts").resolve().as_uri() if db is not None else None


def _log_run(
    client, name, checkpoint: Path, metadata, metrics, lineage, outcomes: Outcomes | None, tmp: Path, root
) -> str:
    """An MLflow run (in an experiment named after the model) holding the files, metrics and params: its id. The
    model card follows once the version exists."""
    from mlflow.entities import Metric, Param

    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name, artifact_location=root)
    run_id = client.create_run(experiment_id, run_name=f"register {name}").info.run_id
    try:
        train = metadata.get("train", {})
        params = {"objective": train.get("objective"), "preset": train.get("preset"), "steps": metadata.get("step")}
        params |= {LINEAGE_PREFIX + k: v for k, v in lineage.items()}
        now = int(datetime.now(UTC).timestamp() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now, 0) for key, value in metrics.items()],
            params=[Param(key, str(value)) for key, value in params.items() if value is not None],
        )
        extra = []
        if outcomes:
            write_outcomes(outcomes, tmp / OUTCOMES)
            extra.append(tmp / OUTCOMES)
        for path in _files(checkpoint) + extra:
            client.log_artifact(run_id, str(path), ARTIFACT_PATH)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _ensure_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="MUG encoders; `production` serves, `candidate` is newest.")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def list_versions(name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> list[VersionInfo]:
    """Every version of `name`, newest first."""
    with _open(uri) as client:
        aliases = _aliases_by_version(client, name)
        if aliases is None:
            raise UserError(f"the registry {uri or default_registry_uri()} has no model named {name!r}")
        versions = client.search_model_versions(f"name='{name}'")
    return sorted(
        (
            VersionInfo(
                version=int(v.version),
                aliases=aliases.get(int(v.version), []),
                score=_score(v.tags.get(SCORE)),
                created=datetime.fromtimestamp(v.creation_timestamp / 1000, UTC),
                run_id=v.run_id,
                tags=dict(v.tags),
            )
            for v in versions
        ),
        key=lambda info: -info.version,
    )


def _version(client, name: str, version: int):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"model {name!r} has no version {version}") from err
        raise


def download_model(version: int, dst, name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> Path:
    """The version's files (a checkpoint directory + MODEL_CARD.md) downloaded under `dst`: the directory."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    with _open(uri) as client:
        run_id = _version(client, name, version).run_id
        return Path(client.download_artifacts(run_id, ARTIFACT_PATH, str(dst)))


def read_model_card(version: int, name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> str:
    with _open(uri) as client, tempfile.TemporaryDirectory() as tmp:
        run_id = _version(client, name, version).run_id
        return Path(client.download_artifacts(run_id, f"{ARTIFACT_PATH}/{CARD}", tmp)).read_text()


def set_alias(name: str, version: int, alias: str, uri: str | None = None) -> None:
    """Point `alias` at `version` by hand (a promotion or a rollback), whatever the scores say."""
    from mlflow.exceptions import MlflowException

    with _open(uri) as client:
        _version(client, name, version)
        try:
            with _writing_to(uri):
                client.set_registered_model_alias(name, alias, str(version))
        except MlflowException as err:
            raise UserError(f"cannot set alias {alias!r}: {_first_line(err)}") from err


def link_to_wandb(checkpoint_dir, registration: Registration) -> str:
    """Also link the version to the W&B Registry (collection `wandb-registry-model/<name>`): what happened, one line.

    W&B registry calls raise in offline mode, so without an API key or with WANDB_MODE offline/disabled this is
    skipped; a failing W&B call is reported rather than raised, since the MLflow registration already stands.
    """
    where = f"{registration.name} v{registration.version} is in the MLflow registry only"
    skipped = f"W&B Registry: skipped ({{}}); {where}"
    if not os.environ.get("WANDB_API_KEY"):
        return skipped.format("no WANDB_API_KEY")
    mode = os.environ.get("WANDB_MODE", "online")
    if mode in ("offline", "disabled", "dryrun"):
        return skipped.format(f"WANDB_MODE={mode} cannot link artifacts")
    import wandb

    target = f"wandb-registry-model/{registration.name}"
    try:
        with wandb.init(project=os.environ.get("WANDB_PROJECT", "mug"), job_type="register") as run:
            artifact = wandb.Artifact(
                registration.name,
                type="model",
                metadata={"mlflow_version": registration.version, "score": registration.score},
            )
            for path in _files(Path(checkpoint_dir)):
                artifact.add_file(str(path))
            run.link_artifact(artifact, target, aliases=registration.aliases)
    except wandb.Error as err:
        return f"W&B Registry: linking to {target} failed ({_first_line(err)})"
    return f"W&B Registry: linked {registration.name} v{registration.version} to {target} as {registration.aliases}"
