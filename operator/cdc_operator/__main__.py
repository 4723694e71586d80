"""``python -m cdc_operator`` / ``headrace-operator``: run the CDCPipeline operator.

Scope: ``--namespace`` (repeatable; or HEADRACE_WATCH_NAMESPACES, comma
separated) watches only those namespaces and needs only namespaced RBAC;
without it the operator watches the whole cluster.

Several replicas: pass ``--peering NAME`` (or HEADRACE_PEERING). Kopf's
peering objects (the KopfPeering / ClusterKopfPeering CRDs, shipped by the
Helm chart when ``peering.enabled``) let the replicas see each other; only the
highest-priority one handles resources, the others stand by and take over
when it stops heartbeating (``HEADRACE_PEERING_LIFETIME_SECONDS``, 30). Kopf
pauses *every* replica when two share a priority, so each replica draws its
own at random unless ``--priority`` (HEADRACE_PEERING_PRIORITY) sets it.
Without peering the operator runs ``--standalone``, which is right for one
replica (the chart's default).

Health: kopf's liveness endpoint answers ``/healthz`` on ``--health-port``;
Prometheus metrics (``headrace_operator_*``) are served on ``--metrics-port``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import kopf
from prometheus_client import start_http_server


@dataclass(frozen=True)
class Options:
    namespaces: tuple[str, ...]
    peering: str | None
    priority: int
    health_port: int
    metrics_port: int
    log_format: str
    verbose: bool

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def parse(argv: Sequence[str], env: dict[str, str] | None = None) -> Options:
    environ = dict(os.environ) if env is None else env
    parser = argparse.ArgumentParser(prog="headrace-operator", description="Reconcile CDCPipeline resources.")
    parser.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    parser.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster (default)")
    parser.add_argument("--peering", default=environ.get("HEADRACE_PEERING") or None, help="kopf peering name")
    parser.add_argument(
        "--priority",
        type=int,
        default=int(environ["HEADRACE_PEERING_PRIORITY"]) if environ.get("HEADRACE_PEERING_PRIORITY") else None,
        help="peering priority: the highest handles resources (default: drawn at random, distinct per replica)",
    )
    parser.add_argument("--health-port", type=int, default=int(environ.get("HEADRACE_HEALTH_PORT", "8080")))
    parser.add_argument("--metrics-port", type=int, default=int(environ.get("HEADRACE_METRICS_PORT", "9090")))
    parser.add_argument(
        "--log-format", choices=["json", "full", "plain"], default=environ.get("HEADRACE_LOG_FORMAT", "json")
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(list(argv))
    namespaces = list(args.namespace)
    if not namespaces and not args.all_namespaces:
        namespaces = [n.strip() for n in environ.get("HEADRACE_WATCH_NAMESPACES", "").split(",") if n.strip()]
    if args.all_namespaces and args.namespace:
        parser.error("--all-namespaces and --namespace exclude each other")
    return Options(
        namespaces=tuple(namespaces),
        peering=args.peering,
        priority=args.priority if args.priority is not None else 1 + secrets.randbelow(2**31 - 2),
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        log_format=args.log_format,
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    import cdc_operator.handlers  # noqa: F401, PLC0415 - registers the handlers with kopf

    formats = {"json": kopf.LogFormat.JSON, "full": kopf.LogFormat.FULL, "plain": kopf.LogFormat.PLAIN}
    kopf.configure(verbose=options.verbose, log_format=formats[options.log_format])
    if options.metrics_port:
        start_http_server(options.metrics_port)
    kopf.run(
        clusterwide=options.clusterwide,
        namespaces=options.namespaces,
        standalone=options.peering is None,
        peering_name=options.peering,
        priority=options.priority,
        liveness_endpoint=f"http://0.0.0.0:{options.health_port}/healthz" if options.health_port else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
