"""`mug registry`: look at the registered models, move their aliases by hand, reproduce a version."""

from __future__ import annotations

import argparse
import math

from mug.errors import UserError
from mug.registry import DEFAULT_MODEL_NAME, PRODUCTION


def add_command(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=DEFAULT_MODEL_NAME, help="registered model name (default: %(default)s)")
    common.add_argument(
        "--uri",
        help="registry URI (default: $MUG_REGISTRY_URI, else sqlite:///runs/registry/mlflow.db under the current "
        "directory)",
    )
    p = sub.add_parser(
        "registry",
        help="list registered model versions, show a model card, promote or roll back a version, reproduce one",
        description="The model registry (MLflow's, on a sqlite file by default; `mlflow ui --backend-store-uri "
        "sqlite:///runs/registry/mlflow.db` shows it too). Pipelines register each evaluated model as a new "
        "version: `candidate` always moves to it, `production` only when its transfer/score beats production's. "
        "VERSION is a version number or an alias (candidate, production).",
        epilog="examples: mug registry list;  mug registry show production;  mug registry promote 3  (rollback: "
        "promote the older version);  mug registry reproduce 3",
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
    again = actions.add_parser(
        "reproduce",
        parents=[common],
        help="re-run a version's training from its lineage and check the result",
        description="Train a registered version again from its lineage alone: the same data revision (fetched by "
        "its DVC address, or the local shards if their md5 is the recorded one), the training config its "
        "checkpoint keeps (seed included), its tokenizer and the version it continued from. Then compare: "
        "identical weights bit for bit (a single-process CPU run), else the final losses within --rtol. Prints "
        "what matched; exit code 0 when reproduced, 1 when not.",
    )
    again.add_argument("version", metavar="VERSION", help="version number or alias")
    again.add_argument("--out", help="run folder for the new training (default: runs/reproduce/NAME-vVERSION)")
    again.add_argument("--device", help="train on this device instead of the recorded one (e.g. cpu)")
    again.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance on the final losses")
    again.set_defaults(func=run_reproduce)


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


def run_reproduce(args: argparse.Namespace) -> int:
    from mug.registry import list_versions
    from mug.reproduce import reproduce

    version = _resolve(args.version, list_versions(args.name, args.uri))
    out = args.out or f"runs/reproduce/{args.name}-v{version}"
    print(f"reproducing {args.name} v{version} from its lineage in {out}")
    result = reproduce(version, args.name, args.uri, out, args.device, args.rtol)
    for check in result.checks:
        print(check)
    verdict = "bit for bit" if result.bitwise else "within tolerance" if result.reproduced else "NOT reproduced"
    print(f"{args.name} v{version}: {'reproduced ' if result.reproduced else ''}{verdict}")
    return 0 if result.reproduced else 1
