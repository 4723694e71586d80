"""``python -m devservices up|down|envtest-up|envtest-down|node-up|node-down|timescaledb-install``: local services.

``up`` starts Cassandra (CDC on) and PostgreSQL in the background, records
their pids and addresses in ``.services/state.json``, and prints how to reach
them; ``down`` stops them. ``timescaledb-install`` puts PGlite with the
timescaledb extension into the cache (the tests start it themselves).
``cassandra-image-config DIR`` writes the Cassandra image's config templates
(scripts/build-images.sh).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from devservices.cassandra import CassandraNode
from devservices.clickhouse import chdb_dsn
from devservices.postgres import PostgresServer
from devservices.process import ServiceError, stop_process_group

STATE_DIR = Path(os.environ.get("HEADRACE_SERVICES_DIR", ".services")).resolve()
STATE = STATE_DIR / "state.json"


def up() -> int:
    if STATE.exists():
        print(f"services already up (see {STATE}); run 'make services-down' first")
        return 1
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    cassandra = CassandraNode(workdir=STATE_DIR / "cassandra", compat_mode=os.environ.get("COMPAT_MODE", "CASSANDRA_4"))
    pg_dir = Path(tempfile.mkdtemp(prefix="headrace-pg-"))
    postgres = PostgresServer(workdir=pg_dir)
    try:
        cassandra.start()
        postgres.start()
    except ServiceError as exc:
        cassandra.stop()
        postgres.stop()
        print(exc, file=sys.stderr)
        return 1
    cassandra.stop_driver()
    assert cassandra.process is not None and postgres.process is not None
    state = {
        "cassandra": {
            "pid": cassandra.process.pid,
            "host": cassandra.host,
            "port": cassandra.port,
            "cdc_raw": str(cassandra.cdc_raw_dir),
            "log": str(cassandra.log_file),
        },
        "postgres": {"pid": postgres.process.pid, "dsn": postgres.dsn(), "workdir": str(pg_dir)},
        "clickhouse": {"dsn": chdb_dsn(STATE_DIR / "chdb")},
    }
    STATE.write_text(json.dumps(state, indent=2))
    print(json.dumps(state, indent=2))
    return 0


def down() -> int:
    if not STATE.exists():
        print("no services recorded")
        return 0
    state = json.loads(STATE.read_text())
    for name in ("cassandra", "postgres"):
        if name in state:
            stop_process_group(state[name]["pid"])
            print(f"stopped {name}")
    if "postgres" in state:
        shutil.rmtree(state["postgres"]["workdir"], ignore_errors=True)
    STATE.unlink()
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "help"
    if command == "up":
        return up()
    if command == "down":
        return down()
    if command in ("envtest-up", "envtest-down"):
        envtest = importlib.import_module("devservices.envtest")
        state_dir = STATE_DIR / "envtest"
        if command == "envtest-up":
            envtest.cli_up(state_dir)
        else:
            envtest.cli_down(state_dir)
        return 0
    if command in ("node-up", "node-down"):
        node = importlib.import_module("devservices.node")
        if command == "node-up":
            node.cli_up(STATE_DIR)
        else:
            node.cli_down(STATE_DIR)
        return 0
    if command == "cassandra-image-config" and len(argv) == 3:
        cassandra = importlib.import_module("devservices.cassandra")
        cassandra.write_image_config(Path(argv[2]))
        return 0
    if command == "timescaledb-install":
        timescaledb = importlib.import_module("devservices.timescaledb")
        try:
            print(f"PGlite with TimescaleDB is in {timescaledb.ensure_installed()}")
        except ServiceError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
