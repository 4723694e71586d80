"""``headrace``: the runtime's command line.

    headrace run --config pipeline.yaml --node NODE --cdc-raw DIR   replicate (foreground)
    headrace snapshot --config pipeline.yaml --table KS.T ...      read tables again into the sinks, then exit
    headrace validate --config pipeline.yaml                       check a config, print problems
    headrace validate --config pipeline.yaml --check-connections   ... and open every sink
    headrace decode SEGMENT... --contact-point HOST                 print a segment's events as JSON lines
    headrace offsets list --config pipeline.yaml                   committed positions per sink and node
    headrace offsets reset --config pipeline.yaml --node N --to SEGMENT:OFFSET --yes
                                                                   set a node's position (runtime stopped)

Every option of ``run`` also reads an environment variable (``HEADRACE_NODE``,
``HEADRACE_CDC_RAW_DIR`` ...), which is how the operator configures it.
Exit codes: 0 done, 1 runtime failure, 2 invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline_runtime.app import Runtime, RuntimeOptions, check_config, check_connections
from pipeline_runtime.config.loader import load_pipeline
from pipeline_runtime.errors import ConfigError, HeadraceError
from pipeline_runtime.memory import tune_garbage_collector
from pipeline_runtime.observability.logging import configure_logging

log = logging.getLogger("headrace")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="headrace", description="Cassandra CDC to PostgreSQL, TimescaleDB, ClickHouse")
    commands = top.add_subparsers(dest="command", required=True)

    def config_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            default=_env("HEADRACE_CONFIG"),
            required=_env("HEADRACE_CONFIG") is None,
            help="pipeline YAML: a CDCPipeline manifest or its spec [HEADRACE_CONFIG]",
        )

    def runtime_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--node",
            default=_env("HEADRACE_NODE", socket.gethostname()),
            help="name of the Cassandra node (pod) whose cdc_raw this is [HEADRACE_NODE]",
        )
        p.add_argument(
            "--cdc-raw",
            type=Path,
            default=_env("HEADRACE_CDC_RAW_DIR", "/var/lib/cassandra/cdc_raw"),
            help="the node's cdc_raw directory [HEADRACE_CDC_RAW_DIR]",
        )
        p.add_argument(
            "--cassandra-host",
            default=_env("HEADRACE_CASSANDRA_HOST"),
            help="this node's Cassandra, when the pipeline sets no contactPoint [HEADRACE_CASSANDRA_HOST]",
        )
        p.add_argument(
            "--secrets-dir",
            type=Path,
            default=_env("HEADRACE_SECRETS_DIR", "/etc/headrace/secrets"),
            help="folder with <secret>/<key> files [HEADRACE_SECRETS_DIR]",
        )

    run = commands.add_parser("run", help="replicate until stopped (SIGTERM/SIGINT)")
    config_option(run)
    runtime_options(run)
    run.add_argument("--http-host", default=_env("HEADRACE_HTTP_HOST", "0.0.0.0"))  # noqa: S104
    run.add_argument(
        "--http-port",
        type=int,
        default=int(_env("HEADRACE_HTTP_PORT", "8080") or 8080),
        help="port of /healthz, /readyz, /metrics [HEADRACE_HTTP_PORT]",
    )
    run.add_argument("--log-level", default=_env("HEADRACE_LOG_LEVEL", "info"))
    run.add_argument(
        "--dead-letter-dir",
        type=Path,
        default=_env("HEADRACE_DEAD_LETTER_DIR"),
        help="where rejected rows are kept (default: beside cdc_raw) [HEADRACE_DEAD_LETTER_DIR]",
    )
    run.add_argument(
        "--report-configmap",
        default=_env("HEADRACE_REPORT_CONFIGMAP"),
        help="write this node's status into this ConfigMap of the pipeline's namespace, for the operator "
        "(the operator sets it; default: no reports) [HEADRACE_REPORT_CONFIGMAP]",
    )

    snapshot = commands.add_parser(
        "snapshot", help="snapshot tables again into the sinks (beside a running runtime or not), then exit"
    )
    config_option(snapshot)
    runtime_options(snapshot)
    snapshot.add_argument(
        "--table",
        dest="tables",
        action="append",
        required=True,
        metavar="KEYSPACE.TABLE",
        help="a selected table with CDC on (repeat for several)",
    )
    snapshot.add_argument("--log-level", default=_env("HEADRACE_LOG_LEVEL", "info"))

    validate = commands.add_parser("validate", help="check a pipeline config and its secrets")
    config_option(validate)
    runtime_options(validate)
    validate.add_argument(
        "--check-connections",
        action="store_true",
        help="also open every sink as the runtime does (reachable, authenticated, TLS verified, what it needs)",
    )

    offsets = commands.add_parser("offsets", help="list or reset committed positions in the sinks")
    actions = offsets.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every committed position, per sink and key")
    config_option(listing)
    runtime_options(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    reset = actions.add_parser(
        "reset", help="set one node's position in the sinks, also backwards (no runtime may read its cdc_raw)"
    )
    config_option(reset)
    runtime_options(reset)
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="SEGMENT:OFFSET", help="the position to restart from")
    target.add_argument(
        "--earliest", action="store_true", help="remove the position: the runtime reads all of cdc_raw again"
    )
    reset.add_argument("--sink", dest="sinks", action="append", help="only this sink (repeat for several)")
    reset.add_argument("--yes", action="store_true", help="do it (without: print what would change)")

    decode = commands.add_parser("decode", help="print the change events of commitlog segments as JSON lines")
    decode.add_argument("segments", nargs="+", type=Path)
    decode.add_argument("--contact-point", default="127.0.0.1", help="a Cassandra node to read system_schema from")
    decode.add_argument("--port", type=int, default=9042)
    decode.add_argument("--node", default="local")
    return top


def command_run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.config)
    configure_logging(args.log_level, pipeline=pipeline.name, node=args.node)
    options = RuntimeOptions(
        node=args.node,
        cdc_raw=args.cdc_raw,
        secrets_dir=args.secrets_dir,
        http_host=args.http_host,
        http_port=args.http_port,
        report_config_map=args.report_configmap,
        dead_letter_dir=args.dead_letter_dir,
        cassandra_host=args.cassandra_host,
    )
    if pipeline.spec.source.offsets_reset is not None:
        from pipeline_runtime import offsets  # noqa: PLC0415

        asyncio.run(offsets.apply_requested_reset(pipeline, options.secrets_dir, options.node, options.cdc_raw))
    return _run_until_done(Runtime(pipeline, options))


def command_snapshot(args: argparse.Namespace) -> int:
    """A snapshot of its own generation (a new one each call), so tables already done are read again."""
    pipeline = load_pipeline(args.config)
    configure_logging(args.log_level, pipeline=pipeline.name, node=args.node)
    options = RuntimeOptions(
        node=args.node,
        cdc_raw=args.cdc_raw,
        secrets_dir=args.secrets_dir,
        http_port=0,
        cassandra_host=args.cassandra_host,
        snapshot_only=tuple(args.tables),
        snapshot_generation="manual-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ"),
    )
    return _run_until_done(Runtime(pipeline, options))


def _run_until_done(runtime: Runtime) -> int:
    tune_garbage_collector()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await runtime.run(stop)

    try:
        asyncio.run(main())
    except ConfigError as exc:
        log.error("invalid configuration", extra={"error": str(exc)})
        return 2
    except HeadraceError as exc:
        log.error("runtime stopped", extra={"error": str(exc)})
        return 1
    return 0


def command_validate(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.config)
    problems = check_config(
        pipeline, RuntimeOptions(node=args.node, cdc_raw=args.cdc_raw, secrets_dir=args.secrets_dir)
    )
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 2
    print(f"pipeline {pipeline.name}: {len(pipeline.spec.sinks)} sink(s), configuration is valid")
    if not args.check_connections:
        return 0
    options = RuntimeOptions(node=args.node, cdc_raw=args.cdc_raw, secrets_dir=args.secrets_dir)
    failed = 0
    for what, trouble in asyncio.run(check_connections(pipeline, options)):
        if trouble is None:
            print(f"{what}: ok")
        else:
            failed += 1
            print(f"{what}: {trouble}", file=sys.stderr)
    return 2 if failed else 0


def command_offsets(args: argparse.Namespace) -> int:
    from pipeline_runtime import offsets  # noqa: PLC0415

    pipeline = load_pipeline(args.config)
    if args.action == "list":
        found = asyncio.run(offsets.list_offsets(pipeline, args.secrets_dir))
        for item in found:
            if args.json:
                record = {"sink": item.sink, "key": item.key, "kind": item.kind}
                print(json.dumps(record | {"segment": item.position.segment_id, "offset": item.position.offset}))
            else:
                print(f"{item.sink}\t{item.key}\t{item.position.segment_id}:{item.position.offset}\t{item.kind}")
        if not found and not args.json:
            print(f"pipeline {pipeline.name}: no committed position in any sink")
        return 0
    position = None if args.earliest else offsets.parse_position(args.to)
    to = "the start of cdc_raw" if position is None else f"{position.segment_id}:{position.offset}"
    if not args.yes:
        print(f"would set node {args.node} of pipeline {pipeline.name} to {to} in every sink; add --yes to do it")
        return 1
    changes = asyncio.run(
        offsets.reset_offsets(pipeline, args.secrets_dir, args.node, position, cdc_raw=args.cdc_raw, sinks=args.sinks)
    )
    for change in changes:
        before = "none" if change.before is None else f"{change.before.segment_id}:{change.before.offset}"
        print(f"{change.sink}\t{args.node}\t{before} -> {to}")
    return 0


def command_decode(args: argparse.Namespace) -> int:
    from pipeline_runtime.config.model import CassandraSource  # noqa: PLC0415
    from pipeline_runtime.memory import tune_garbage_collector  # noqa: PLC0415
    from pipeline_runtime.source.connect import connect  # noqa: PLC0415
    from pipeline_runtime.source.dump import dump_segments  # noqa: PLC0415

    session = connect(CassandraSource(contact_point=args.contact_point, port=args.port), lambda ref: "")
    tune_garbage_collector()
    encode = json.JSONEncoder(default=str).encode
    write = sys.stdout.write
    try:
        for record in dump_segments(args.segments, session, args.node):
            write(encode(record) + "\n")
        sys.stdout.flush()
    finally:
        session.cluster.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "validate":
            return command_validate(args)
        if args.command == "snapshot":
            return command_snapshot(args)
        if args.command == "offsets":
            return command_offsets(args)
        return command_decode(args)
    except ConfigError as exc:
        print(f"headrace: {exc}", file=sys.stderr)
        return 2
    except HeadraceError as exc:
        print(f"headrace: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
