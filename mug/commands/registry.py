"""`mug registry`: look at the registered models and move their aliases by hand."""

from __future__ import annotations

import argparse
import math

from mug.errors import UserError
from mug.registry import DEFAULT_MODEL_NAME, PRODUCTION


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=DEFAULT_MODEL_NAME, help="registered model name (default: %(default)s)")
    common.add_argument(
        "--uri",
        help="registry URI (default: $MUG_REGISTRY_URI, else sqlite:///runs/registry/mlflow.db under the current "
        "directory)",
    )
    p = sub.add_parser(
        "registry",
        help="list registered model versions, show a model card, promote or roll back a version",
        description="The model registry (MLflow's, on a sqlite file by default; `mlflow ui --backend-store-uri "
        "sqlite:///runs/registry/mlflow.db` shows it too). Pipelines register each evaluated model as a new "
        "version: `candidate` always moves to it, `production` only when its transfer/score beats production's. "
        "VERSION is a version number or an alias (candidate, production).",
        epilog="examples: mug registry list;  mug registry show production;  mug registry promote 3  (rollback: "
        "promote the older version)",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser(
        "list", parents=[common], help="versions, newest first: aliases, score, creation time, pipeline run"
    )
    ls.set_defaults(func=run_list)
    show = actions.add_parser("show", parents=[common], help="print a version's model card (metrics and lineage)")
    show.add_argument("version", metavar="VERSION", help="version number or alias")
    show.set_defaults(func=run_show)
    promote = actions.add_parser(
        "promote",
        parents=[common],
        help="point an alias (default: production) at a version, whatever the scores say",
        description="Move an alias by hand: promote a candidate the automatic rule kept out, or roll production "
        "back to an older version. Prints what moved.",
    )
    promote.add_argument("version", metavar="VERSION", help="version number or alias to promote")
    promote.add_argument("--alias", default=PRODUCTION, help="alias to move (default: %(default)s)")
    promote.set_defaults(func=run_promote)


def _resolve(ref: str, versions) -> int:
    """A version number or an alias -> the version number, checked against the registry."""
    for info in versions:
        if ref == str(info.version) or ref in info.aliases:
            return info.version
    numbers = ", ".join(str(info.version) for info in reversed(versions))
    aliases = ", ".join(sorted({alias for info in versions for alias in info.aliases})) or "none"
    raise UserError(f"no version or alias {ref!r} (versions: {numbers}; aliases: {aliases})")


def run_list(args: argparse.Namespace) -> None:
    from mug.registry import list_versions

    versions = list_versions(args.name, args.uri)
    print(f"{'VERSION':<8} {'ALIASES':<22} {'TRANSFER/SCORE':<15} {'CREATED (UTC)':<17} RUN")
    for info in versions:
        score = "-" if math.isnan(info.score) else f"{info.score:.4f}"
        source = info.tags.get("lineage.pipeline_run") or f"mlflow:{info.run_id}"
        aliases = ", ".join(info.aliases) or "-"
        print(f"{info.version:<8} {aliases:<22} {score:<15} {info.created:%Y-%m-%d %H:%M} {source}")


def run_show(args: argparse.Namespace) -> None:
    from mug.registry import list_versions, read_model_card

    versions = list_versions(args.name, args.uri)
    version = _resolve(args.version, versions)
    aliases = next(info.aliases for info in versions if info.version == version)
    print(f"{args.name} v{version} (aliases: {', '.join(aliases) or 'none'})\n")
    print(read_model_card(version, args.name, args.uri))


def run_promote(args: argparse.Namespace) -> None:
    from mug.registry import list_versions, set_alias

    versions = list_versions(args.name, args.uri)
    version = _resolve(args.version, versions)
    before = next((info.version for info in versions if args.alias in info.aliases), None)
    if before == version:
        print(f"{args.alias}: already on v{version}")
        return
    set_alias(args.name, version, args.alias, args.uri)
    print(f"{args.alias}: {'none' if before is None else f'v{before}'} -> v{version}")
