"""The ``fabric features`` command group: apply, list, materialize, demo-data.

Split from :mod:`fabric_ray.cli`, which registers it with :func:`_add_features_parser`. The shared
helpers (``_print_table``, ``_problems``) are imported inside the functions because
``fabric_ray.cli`` imports this module at load time.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fabric_ray.config import FabricConfig

def _catalog(config: FabricConfig, prog: str):
    """``(catalog, None)`` from the feature repo, or ``(None, exit code)`` after printing why not."""
    from fabric_ray.cli import _problems
    from fabric_ray.features.feast_repo import FeatureRepoError, load_catalog

    try:
        return load_catalog(config), None
    except FeatureRepoError as exc:
        return None, _problems(prog, [str(exc)], f"fix the feature repo {config.feature_repo}")


def cmd_features_apply(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.cli import _print_table, _problems
    from fabric_ray.features.feast_repo import FeatureRepoError, apply

    prog = "fabric features apply"
    try:
        report = apply(config)
    except FeatureRepoError as exc:
        return _problems(prog, [str(exc)], "nothing applied")
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    _print_table([(o.kind, o.name, o.status) for o in report.objects], ("kind", "name", "status"))
    print(
        f"applied {len(report.objects)} object(s), {report.changed} changed, to project {report.project!r}: "
        f"registry {report.registry}, online store {report.online_store} ({len(report.online_views)} view(s) ready)"
    )
    return 0


def cmd_features_list(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.cli import _print_table
    from fabric_ray.governance.products import format_duration

    catalog, code = _catalog(config, "fabric features list")
    if catalog is None:
        return code
    pushes = {v: [p.name for p in catalog.push_sources.values() if v in p.views] for v in catalog.views}
    if args.json:
        print(json.dumps({
            "repo": str(config.feature_repo),
            "views": [
                {"name": v.name, "entity": v.entity.name, "join_key": v.entity.join_key, "key_dtype": v.entity.dtype,
                 "features": {f.name: f.dtype for f in v.features}, "ttl_s": v.ttl_s, "push_sources": pushes[v.name],
                 "batch_source": catalog.batch_sources[v.name].__dict__ if v.name in catalog.batch_sources else None}
                for v in catalog.views.values()
            ],
            "services": {s.name: [f"{v}:{f}" for v, f in s.refs] for s in catalog.services.values()},
        }, indent=2))
        return 0
    print(f"feature repo {config.feature_repo} (project {config.features.project})")
    print()
    rows = [
        (
            v.name, f"{v.entity.name} ({v.entity.join_key} {v.entity.dtype})",
            ", ".join(f"{f.name} {f.dtype}" for f in v.features),
            format_duration(v.ttl_s) if v.ttl_s else "-",
            ", ".join(pushes[v.name]) or "-",
            catalog.batch_sources[v.name].path if v.name in catalog.batch_sources else "-",
        )
        for v in catalog.views.values()
    ]
    _print_table(rows, ("view", "entity", "features", "ttl", "push sources", "batch source"))
    if catalog.services:
        print()
        services = [
            (s.name, len(s.refs), ", ".join(dict.fromkeys(v for v, _ in s.refs))) for s in catalog.services.values()
        ]
        _print_table(services, ("service", "features", "views"))
    return 0


def _utc(text: str | None, option: str) -> Any:
    """An ISO 8601 time as an aware UTC datetime (naive times are UTC); ValueError naming the option."""
    from datetime import datetime, timezone

    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not an ISO 8601 time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def cmd_features_materialize(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.cli import _problems

    prog = "fabric features materialize"
    catalog, code = _catalog(config, prog)
    if catalog is None:
        return code
    problems = []
    for name in args.views:
        if name not in catalog.views:
            problems.append(f"unknown feature view {name!r}; known views: {sorted(catalog.views)}")
        elif name not in catalog.batch_sources:
            problems.append(f"feature view {name!r} has no batch source to materialize from (the stream or pushes feed it)")
    try:
        start, end = _utc(args.start, "--start"), _utc(args.end, "--end")
    except ValueError as exc:
        problems.append(str(exc))
        start = end = None
    if start is not None and end is not None and start >= end:
        problems.append(f"--start {args.start} is not before --end {args.end}")
    if problems:
        return _problems(prog, problems, "nothing materialized")
    try:
        from fabric_ray.features.materialize import materialize
    except ImportError as exc:
        return _problems(prog, [f"materialization is not available in this installation: {exc}"], "nothing materialized")
    report = materialize(
        config, catalog, list(args.views) or None, start=start, end=end, incremental=not args.full, progress=not args.no_progress
    )
    if args.json:
        print(json.dumps(report.to_dict() if hasattr(report, "to_dict") else report, default=str))
    else:
        print(report)
    return 0


def cmd_features_demo_data(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.cli import _print_table, _problems
    from fabric_ray.demo.batch_features import write_demo_batch_features
    from fabric_ray.storage import DatasetError, StorageError

    prog = "fabric features demo-data"
    try:
        report = write_demo_batch_features(
            config, source=args.source, events=args.events, users=args.users, seed=args.seed, days=args.days
        )
    except (ValueError, StorageError, DatasetError) as exc:
        return _problems(prog, [str(exc)], "nothing written")
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    origin = f"the ETL dataset payments_daily under {config.storage_root}" if report.source == "etl" else "generated payments"
    print(f"{report.payments:,} payments from {origin}, days {', '.join(report.days) or '-'} (UTC)")
    rows = [(view, f"{n:,}", len(report.files[view]), f"{config.storage_root}/features/{view}/") for view, n in report.rows.items()]
    _print_table(rows, ("view", "rows", "files", "where"))
    print("next: `fabric features apply`, then `fabric features materialize` to load them into the online store")
    return 0


def _add_features_parser(sub: Any) -> None:
    config_help = "path to fabric.yaml (as before the command): feature repo, registry, online store, storage root"
    features = sub.add_parser(
        "features",
        help="the Feast feature repo: apply it, list its views, materialize batch features (apply, list, materialize, demo-data)",
        description="The feature store is a Feast feature repo (features.repo, default feature_store/): entities, "
        "feature views, push sources and feature services in Python files. The fabric serves every view in it. "
        "Embedded, the registry and Feast's SQLite online store live under <home>/features/; any Feast online store "
        "can be configured instead (features.online_store, e.g. Redis). Batch views read Parquet under "
        "<storage root>/features/<view>/. See docs/features.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = features.add_subparsers(dest="features_command", required=True, metavar="ACTION")

    apply = actions.add_parser(
        "apply",
        help="register the repo's definitions and prepare the online store (feast apply)",
        description="Import every Python file of the feature repo as `feast apply` does, check that the fabric can "
        "serve every view (one entity, types Int64/Int32/Float64/Float32/String/Bool), register entities, data "
        "sources, feature views and feature services in the registry (features.registry, default "
        "<home>/features/registry.db), delete what the repo no longer defines, and create the online tables. "
        "Prints each object with its status (new, changed, unchanged, deleted); applying again changes nothing. "
        "No Ray needed. Exits 2 when the repo does not load or uses something the fabric does not serve.",
    )
    apply.add_argument("--json", action="store_true", help="print the report as one JSON line")
    apply.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    apply.set_defaults(func=cmd_features_apply)

    lister = actions.add_parser(
        "list",
        help="list the feature views, their entity, features, TTL and sources, and the feature services",
        description="Print the feature repo's views as a table (entity and join key, features with types, TTL, the "
        "push sources that feed each view, the Parquet folder it materializes from) and its feature services. "
        "Read from the repo's files: no apply needed, no Ray.",
    )
    lister.add_argument("--json", action="store_true", help="print views and services as JSON")
    lister.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    lister.set_defaults(func=cmd_features_list)

    mat = actions.add_parser(
        "materialize",
        help="load the latest batch rows per entity into the online store (on Ray Data), and warm the cache",
        description="For each VIEW (default: every view with a batch source), read its Parquet rows in the event-time "
        "range, keep the latest row per entity, and write them through Feast's online store interface in batches, "
        "streaming on Ray Data. Without --start, a run continues from where the last one ended (incremental); "
        "--full starts over from the oldest row. Times are ISO 8601 (UTC unless they carry an offset). "
        "See docs/materialization.md. Exits 2 on an unknown view or a bad time.",
    )
    mat.add_argument("views", nargs="*", metavar="VIEW", help="feature views to materialize (default: all with a batch source)")
    mat.add_argument("--start", metavar="ISO", help="earliest event time to load (default: the end of the last run)")
    mat.add_argument("--end", metavar="ISO", help="latest event time to load, exclusive (default: now)")
    mat.add_argument("--full", action="store_true", help="ignore earlier runs: load the whole range again")
    mat.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    mat.add_argument("--json", action="store_true", help="print the report as one JSON line")
    mat.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    mat.set_defaults(func=cmd_features_materialize)

    demo = actions.add_parser(
        "demo-data",
        help="write the demo's batch features (user_daily, merchant_daily) as Parquet under the storage root",
        description="Compute user_daily and merchant_daily (one row per entity and UTC day, event time the end of "
        "the day) from the ETL dataset payments_daily when it exists, else from generated payments spread over the "
        "last complete days, and write them to <storage root>/features/<view>/<day>.parquet (a day's file is "
        "replaced when written again). No Ray needed.",
    )
    demo.add_argument("--source", choices=("auto", "events", "etl"), default="auto",
                      help="etl: the payments_daily dataset; events: generated payments; auto (default): the dataset if it exists")
    demo.add_argument("--events", type=int, default=20_000, help="generated payments (default 20000)")
    demo.add_argument("--users", type=int, default=1_000, help="distinct users among them (default 1000)")
    demo.add_argument("--days", type=int, default=3, help="complete UTC days before today they cover (default 3)")
    demo.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    demo.add_argument("--json", action="store_true", help="print what was written as one JSON line")
    demo.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    demo.set_defaults(func=cmd_features_demo_data)
