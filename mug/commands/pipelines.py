"""`mug pipelines ...`: list, run locally, compile, upload, run and schedule the Kubeflow pipelines.

kfp and the `pipelines` package are imported inside each command: `mug` itself must import without kfp.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_command(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "pipelines",
        help="run the pipelines locally, or compile, upload, run and schedule them on Kubeflow Pipelines",
        description="The pipelines (mug-pretrain, mug-benchmark, mug-retrain): run them here with kfp.local, or "
        "publish them to a Kubeflow Pipelines server as versioned pipelines.",
    )
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")

    ls = verbs.add_parser("list", help="the pipelines with their parameters and defaults")
    ls.set_defaults(func=_list)

    local = verbs.add_parser(
        "run-local",
        help="run a pipeline here with kfp.local (no cluster)",
        description="Run pipeline NAME in subprocesses of this environment; its outputs land under --pipeline-root.",
    )
    local.add_argument("name", metavar="NAME")
    _add_params(local)
    local.add_argument("--pipeline-root", default="runs/pipelines", help="outputs of the run (default: %(default)s)")
    local.add_argument("--verbose", action="store_true", help="stream every task's output (always in the log file)")
    local.set_defaults(func=_run_local)

    comp = verbs.add_parser(
        "compile",
        help="compile pipelines to OUT/<name>/<version>.yaml",
        description="Compile to OUT/<name>/<mug version>.yaml; the description names the git commit.",
    )
    _add_names(comp)
    comp.add_argument("--out", default="dist/pipelines", help="output folder (default: %(default)s)")
    comp.set_defaults(func=_compile)

    up = verbs.add_parser(
        "upload",
        help="compile and upload pipelines: a new pipeline, or a new version of an existing one",
        description="Compile each pipeline and upload it to the server: created the first time, a new version "
        "(named <name>-<version>-<commit>-<time>) afterwards. Prints the pipeline and version ids.",
    )
    _add_names(up)
    up.add_argument("--out", default="dist/pipelines", help="where the compiled YAML goes (default: %(default)s)")
    _add_server(up)
    up.set_defaults(func=_upload)

    run = verbs.add_parser(
        "run",
        help="start a run of a pipeline on the server",
        description="Start a run of the newest uploaded version of NAME, or of a compiled --package.",
    )
    run.add_argument("name", metavar="NAME")
    _add_params(run)
    _add_server(run)
    run.add_argument("--experiment", default="Default", help="experiment, created if missing (default: %(default)s)")
    run.add_argument("--package", help="run this compiled YAML instead of the uploaded version")
    run.add_argument("--run-name", help="display name of the run (default: NAME and the time)")
    run.set_defaults(func=_run)

    sch = verbs.add_parser(
        "schedule",
        help="create a recurring run of an uploaded pipeline",
        description="Create a recurring run of uploaded pipeline NAME: one run at a time, no backfill of missed "
        "runs. KFP cron has six fields, seconds first: '0 0 3 * * *' is 03:00 every day.",
    )
    sch.add_argument("name", metavar="NAME")
    sch.add_argument("--cron", required=True, help="six fields, seconds first, e.g. '0 0 3 * * *'; or @daily")
    sch.add_argument(
        "--version",
        choices=("latest", "pinned"),
        default="latest",
        help="latest: each run takes the newest uploaded version (KFP >= 2.5); pinned: the newest one now "
        "(default: %(default)s)",
    )
    _add_params(sch)
    _add_server(sch)
    sch.add_argument("--experiment", default="Default", help="experiment, created if missing (default: %(default)s)")
    sch.add_argument("--job-name", help="display name of the recurring run (default: NAME, version and cron)")
    sch.set_defaults(func=_schedule)


def _add_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="pipelines to take (see `mug pipelines list`)")
    parser.add_argument("--all", action="store_true", help="take every pipeline")


def _add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='a pipeline parameter (repeatable); lists and dicts as JSON or YAML, e.g. \'objectives=["mae","mug"]\'',
    )


def _add_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=os.environ.get("KF_PIPELINES_ENDPOINT"),
        help="the KFP API, e.g. http://localhost:8080 (default: $KF_PIPELINES_ENDPOINT)",
    )
    parser.add_argument("--namespace", help="Kubernetes namespace of a multi-user deployment")
    parser.add_argument(
        "--existing-token",
        help="bearer token for the API, never printed (IAP logins use kfp's KF_PIPELINES_*_CLIENT_ID variables)",
    )


def _server(args: argparse.Namespace):
    from mug.errors import UserError
    from pipelines.publish import Server

    if not args.host:
        raise UserError("no KFP host: pass --host URL or set KF_PIPELINES_ENDPOINT")
    return Server(args.host, args.namespace, args.existing_token)


def _names(args: argparse.Namespace) -> list[str]:
    from mug.errors import UserError
    from pipelines.publish import pipeline_func, registry

    if args.all == bool(args.names):
        raise UserError("name the pipelines to take, or pass --all (not both)")
    names = sorted(registry()) if args.all else args.names
    for name in names:
        pipeline_func(name)  # an unknown name fails before anything is written or sent
    return names


def _list(args: argparse.Namespace) -> None:
    from pipelines.publish import declared_params, pipeline_func, registry

    for name in sorted(registry()):
        summary = (pipeline_func(name).description or "").strip().splitlines()
        print(f"{name}  {summary[0] if summary else ''}".rstrip())
        for key, p in declared_params(name).items():
            default = "(required)" if p.required else f"= {p.default!r}"
            print(f"    {key}: {p.type} {default}")


def _run_local(args: argparse.Namespace) -> None:
    from pipelines.local import run_local
    from pipelines.publish import declared_params, parse_params

    arguments = parse_params(args.param, declared_params(args.name), args.name)
    print(run_local(args.name, arguments, pipeline_root=args.pipeline_root, verbose=args.verbose))


def _compile(args: argparse.Namespace) -> None:
    from pipelines.publish import compile_pipeline

    for name in _names(args):
        print(compile_pipeline(name, args.out))


def _upload(args: argparse.Namespace) -> None:
    from pipelines.publish import upload

    server = _server(args)
    for name in _names(args):
        done = upload(name, server, args.out)
        what = "created pipeline" if done.created else "new version of"
        print(f"{name}: {what} {done.pipeline_id}, version {done.version_name} ({done.version_id})")


def _run(args: argparse.Namespace) -> None:
    from pipelines.publish import declared_params, package_params, parse_params, run

    server = _server(args)
    declared = package_params(args.package) if args.package else declared_params(args.name)
    arguments = parse_params(args.param, declared, args.name)
    run_id = run(args.name, server, arguments, args.experiment, args.package, args.run_name)
    print(f"{args.name}: run {run_id}")


def _schedule(args: argparse.Namespace) -> None:
    from pipelines.publish import cached_tasks, declared_params, parse_params, schedule

    server = _server(args)
    arguments = parse_params(args.param, declared_params(args.name), args.name)
    recurring_id, version_id = schedule(
        args.name, server, args.cron, arguments, args.experiment, args.version == "pinned", args.job_name
    )
    following = f"pinned to version {version_id}" if version_id else "following the newest version"
    print(f"{args.name}: recurring run {recurring_id} ({args.cron}), {following}")
    caching = cached_tasks(args.name)
    if caching:
        print(
            f"warning: {args.name} caches {', '.join(caching)}: scheduled runs reuse cached results unless the "
            "pipeline turns caching off (task.set_caching_options(False))",
            file=sys.stderr,
        )
