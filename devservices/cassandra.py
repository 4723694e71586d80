"""A real single-node Cassandra 5.0 with CDC on, run from Maven Central jars.

The jars come from ``scripts/fetch-cassandra.sh`` (cached under
``$HEADRACE_CACHE/cassandra-<version>/lib``). This module writes its own
``cassandra.yaml``, logback config and Java 17 options, starts
``CassandraDaemon`` on loopback with free ports, waits for CQL, and stops it.

Settings favour tests: 1 MiB commitlog segments (so segments roll quickly),
periodic sync every 50 ms (so ``_cdc.idx`` follows writes closely), a small
heap and small memtables. ``compat_mode`` picks the commitlog format:
``CASSANDRA_4`` (stock 5.0 default: descriptor version 7, messaging 12) or
``NONE`` (version 8, messaging 13). ``commitlog_compression`` names a
compressor class (``LZ4Compressor``, ``SnappyCompressor``, ``DeflateCompressor``,
``ZstdCompressor``) to write compressed commitlog segments; None (the default)
writes them uncompressed, as a stock ``cassandra.yaml`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devservices.process import ManagedProcess, ServiceError, cache_dir, free_port, port_open

DEFAULT_VERSION = os.environ.get("CASSANDRA_VERSION", "5.0.8")
COMPAT_MODES = ("CASSANDRA_4", "NONE")
COMMITLOG_COMPRESSORS = ("LZ4Compressor", "SnappyCompressor", "DeflateCompressor", "ZstdCompressor")
REPO = Path(__file__).resolve().parent.parent

#: Java 17 module openings Cassandra 5.0 needs (conf/jvm17-server.options).
JVM17_OPTIONS = [
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]

LOGBACK = """<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
</configuration>
"""


#: The class the JVM runs.
DAEMON_CLASS = "org.apache.cassandra.service.CassandraDaemon"

#: Where the Cassandra image (e2e/images/cassandra) keeps the jars, its config templates and its data.
IMAGE_HOME = Path("/opt/cassandra")
IMAGE_DATA = Path("/var/lib/cassandra")
#: Where its entrypoint writes the config it fills in (the image's file system is read-only to uid 999).
IMAGE_CONF = Path("/tmp/cassandra-conf")
#: Placeholders the image's entrypoint replaces: the pod's address, the cluster's seeds.
POD_IP_PLACEHOLDER = "@POD_IP@"
SEEDS_PLACEHOLDER = "@SEEDS@"

#: Logs of the image go to stdout (``kubectl logs``).
CONSOLE_LOGBACK = """<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def write_image_config(folder: Path, version: str = DEFAULT_VERSION) -> None:
    """The Cassandra image's config: the settings the tests' own nodes run with, for a pod.

    ``cassandra.yaml`` and ``jvm.options`` carry placeholders for the pod's
    address and the seeds, which the image's entrypoint fills in at start; the
    storage and CQL ports are the usual 7000 and 9042. One source for both:
    the image runs Cassandra exactly as the test suite does.
    """
    node = CassandraNode(
        workdir=IMAGE_DATA,
        compat_mode="CASSANDRA_4",
        host=POD_IP_PLACEHOLDER,
        port=9042,
        storage_port=7000,
        seed=SEEDS_PLACEHOLDER,
        version=version,
    )
    jamm = next((cassandra_home(version) / "lib").glob("jamm-*.jar"), None)
    options = node.jvm_options(IMAGE_CONF, IMAGE_HOME / "lib" / jamm.name if jamm else None, ring_delay_ms=5000)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cassandra.yaml").write_text(json.dumps(node.settings(), indent=2))
    (folder / "logback.xml").write_text(CONSOLE_LOGBACK)
    command = [*options, "-cp", f"{IMAGE_CONF}:{IMAGE_HOME / 'lib'}/*", DAEMON_CLASS]
    (folder / "jvm.options").write_text("\n".join(command) + "\n")


def cassandra_home(version: str = DEFAULT_VERSION) -> Path:
    """Folder with ``lib/*.jar`` for ``version``; fetched with Maven when missing."""
    home = cache_dir() / f"cassandra-{version}"
    if not (home / ".complete").exists():
        script = REPO / "scripts" / "fetch-cassandra.sh"
        result = subprocess.run(["bash", str(script), version], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"cassandra: {script} {version} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return home


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("cassandra: java is missing (Java 17 is needed: apt-get install -y openjdk-17-jre-headless)")
    return java


@dataclass
class CassandraNode:
    """One running Cassandra node and where it keeps its files."""

    workdir: Path
    compat_mode: str
    #: Compressor class of the commitlog (``commitlog_compression``), None for plain segments.
    commitlog_compression: str | None = None
    #: ``commitlog_segment_size`` in MiB: small by default so segments roll quickly in tests.
    commitlog_segment_mib: int = 1
    #: ``cdc_total_space`` in MiB: Cassandra refuses writes to CDC tables once cdc_raw holds this much.
    cdc_total_space_mib: int = 256
    #: The JVM heap: small for the tests' nodes; benchmarks use Cassandra's own default (``default_heap_mib``).
    heap_mib: int = 768
    host: str = "127.0.0.1"
    port: int = 0
    storage_port: int = 0
    version: str = DEFAULT_VERSION
    startup_seconds: float = 0.0
    #: ``host:storage_port`` of the cluster's seed; None: this node seeds itself (a single node).
    seed: str | None = None
    #: The node's one token (a cluster's nodes get evenly spaced ones); None: Cassandra picks one.
    initial_token: int | None = None
    process: ManagedProcess | None = None
    _cluster: Any = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def commitlog_dir(self) -> Path:
        return self.workdir / "commitlog"

    @property
    def cdc_raw_dir(self) -> Path:
        return self.workdir / "cdc_raw"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "system.log"

    @property
    def commitlog_version(self) -> int:
        """Commitlog descriptor version this node writes."""
        return 7 if self.compat_mode == "CASSANDRA_4" else 8

    def settings(self) -> dict[str, Any]:
        """The cassandra.yaml this node runs with."""
        if self.commitlog_compression is not None and self.commitlog_compression not in COMMITLOG_COMPRESSORS:
            raise ValueError(
                f"commitlog_compression must be one of {COMMITLOG_COMPRESSORS}, not {self.commitlog_compression!r}"
            )
        extra: dict[str, Any] = {}
        if self.commitlog_compression is not None:
            extra["commitlog_compression"] = [{"class_name": self.commitlog_compression}]
        if self.initial_token is not None:
            # A fresh cluster with fixed tokens has nothing to stream: nodes join at once.
            extra |= {"initial_token": str(self.initial_token), "auto_bootstrap": False}
        return extra | {
            "cluster_name": "headrace-test",
            "num_tokens": 1,
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "endpoint_snitch": "SimpleSnitch",
            "seed_provider": [
                {
                    "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                    "parameters": [{"seeds": self.seed or f"{self.host}:{self.storage_port}"}],
                }
            ],
            "listen_address": self.host,
            "rpc_address": self.host,
            "storage_port": self.storage_port,
            "native_transport_port": self.port,
            "start_native_transport": True,
            "data_file_directories": [str(self.data_dir)],
            "commitlog_directory": str(self.commitlog_dir),
            "cdc_raw_directory": str(self.cdc_raw_dir),
            "saved_caches_directory": str(self.workdir / "saved_caches"),
            "hints_directory": str(self.workdir / "hints"),
            "commitlog_sync": "periodic",
            "commitlog_sync_period": "50ms",
            "commitlog_segment_size": f"{self.commitlog_segment_mib}MiB",
            "cdc_enabled": True,
            "cdc_total_space": f"{self.cdc_total_space_mib}MiB",
            "cdc_free_space_check_interval": "250ms",
            "storage_compatibility_mode": self.compat_mode,
            "memtable_allocation_type": "heap_buffers",
            "memtable_heap_space": "64MiB",
            "auto_snapshot": False,
            "concurrent_reads": 4,
            "concurrent_writes": 4,
            "concurrent_counter_writes": 4,
            "concurrent_compactors": 1,
            "authenticator": "AllowAllAuthenticator",
            "authorizer": "AllowAllAuthorizer",
            "materialized_views_enabled": True,
            "user_defined_functions_enabled": False,
            "batch_size_warn_threshold": "64KiB",
            "batch_size_fail_threshold": "512KiB",
        }

    def java_command(self) -> list[str]:
        lib = cassandra_home(self.version) / "lib"
        conf = self.workdir / "conf"
        options = self.jvm_options(conf, next(lib.glob("jamm-*.jar"), None))
        return [java_binary(), *options, "-cp", f"{conf}:{lib}/*", DAEMON_CLASS]

    def jvm_options(self, conf: Path, jamm: Path | None, ring_delay_ms: int = 100) -> list[str]:
        """The JVM's options: heap, Java 17 openings, where config, data and logs are, test speed-ups.

        ``ring_delay_ms``: how long a starting node listens to gossip. 100 ms
        suits the tests' nodes (fixed tokens, nothing to stream); a node that
        bootstraps into a running cluster (a StatefulSet pod) must first hear
        a seed, or it stops with "Unable to contact any seeds".
        """
        options = [
            f"-Xms{min(512, self.heap_mib)}m",
            f"-Xmx{self.heap_mib}m",
            "-Xss512k",
            "-XX:+UseG1GC",
            "-XX:+HeapDumpOnOutOfMemoryError",
            "-XX:HeapDumpPath=" + str(self.log_dir),
            *JVM17_OPTIONS,
            f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={self.workdir}",
            f"-Dcassandra.logdir={self.log_dir}",
            f"-Dlogback.configurationFile=file://{conf / 'logback.xml'}",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            f"-Dcassandra.ring_delay_ms={ring_delay_ms}",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-Dcassandra.disable_auth_caches_remote_configuration=true",
            "-Djava.net.preferIPv4Stack=true",
        ]
        if jamm is not None:
            options.append(f"-javaagent:{jamm}")
        return options

    def write_config(self) -> None:
        conf = self.workdir / "conf"
        for folder in (conf, self.data_dir, self.commitlog_dir, self.cdc_raw_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML: no YAML writer needed on the test path.
        (conf / "cassandra.yaml").write_text(json.dumps(self.settings(), indent=2))
        (conf / "logback.xml").write_text(LOGBACK)

    def start(self, timeout: float = 180.0) -> None:
        self.port = self.port or free_port(self.host)
        self.storage_port = self.storage_port or free_port(self.host)
        self.write_config()
        self.process = ManagedProcess("cassandra", self.java_command(), self.log_dir / "stdout.log")
        self.process.start()
        self.process.wait_until(lambda: port_open(self.host, self.port), timeout=timeout, interval=0.5)
        self.process.wait_until(self._cql_answers, timeout=60.0, interval=0.5)

    def restart(self, timeout: float = 180.0, attempts: int = 3) -> None:
        """Start a stopped node again on its ports, with its data (hints then replay to it).

        A restarted cluster node first runs a gossip shadow round with its seed, bounded by the
        short ring delay the tests use; on a loaded machine the seed can answer too late, and
        Cassandra exits with "Unable to gossip with any peers". That attempt is repeated.
        """
        for attempt in range(attempts):
            try:
                self.start(timeout)
                return
            except ServiceError as exc:
                if "Unable to gossip with any peers" not in str(exc) or attempt == attempts - 1:
                    raise

    def _cql_answers(self) -> bool:
        self.session().execute("SELECT release_version FROM system.local")
        return True

    def session(self, keyspace: str | None = None) -> Any:
        """A cassandra-driver session on this node (one cluster object per node)."""
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile  # noqa: PLC0415
        from cassandra.policies import WhiteListRoundRobinPolicy  # noqa: PLC0415

        if self._cluster is None:
            profile = ExecutionProfile(
                load_balancing_policy=WhiteListRoundRobinPolicy([self.host]), request_timeout=30.0
            )
            self._cluster = Cluster(
                [self.host],
                port=self.port,
                protocol_version=5,
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                connect_timeout=10,
                control_connection_timeout=10,
            )
        return self._cluster.connect(keyspace)

    def stop_driver(self) -> None:
        """Close the driver's connections (the node keeps running)."""
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.shutdown()
            self._cluster = None

    def stop(self) -> None:
        self.stop_driver()
        if self.process is not None:
            self.process.stop(timeout=30.0)

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def default_heap_mib() -> int:
    """The heap Cassandra gives itself on this machine (``conf/cassandra-env.sh``, ``calculate_heap_sizes``):
    the larger of half the memory capped at 1 GiB and a quarter capped at 8 GiB."""
    memory_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return max(min(memory_mib // 2, 1024), min(memory_mib // 4, 8192))


@contextlib.contextmanager
def running_cassandra(
    workdir: Path,
    compat_mode: str = "CASSANDRA_4",
    version: str = DEFAULT_VERSION,
    *,
    commitlog_compression: str | None = None,
    commitlog_segment_mib: int = 1,
    cdc_total_space_mib: int = 256,
    heap_mib: int = 768,
) -> Iterator[CassandraNode]:
    """Start a node in ``workdir``, yield it, and always stop it."""
    if compat_mode not in COMPAT_MODES:
        raise ValueError(f"compat_mode must be one of {COMPAT_MODES}, not {compat_mode!r}")
    node = CassandraNode(
        workdir=workdir,
        compat_mode=compat_mode,
        version=version,
        commitlog_compression=commitlog_compression,
        commitlog_segment_mib=commitlog_segment_mib,
        cdc_total_space_mib=cdc_total_space_mib,
        heap_mib=heap_mib,
    )
    started = time.monotonic()
    try:
        node.start()
        node.startup_seconds = time.monotonic() - started
        yield node
    finally:
        node.stop()


#: Loopback addresses of a local cluster's nodes: Linux routes all of 127.0.0.0/8 to ``lo``.
CLUSTER_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@dataclass
class CassandraCluster:
    """Nodes of one local cluster: one address each (127.0.0.x), the same two ports, evenly spaced tokens."""

    nodes: list[CassandraNode]

    @property
    def hosts(self) -> list[str]:
        return [node.host for node in self.nodes]

    def running(self) -> list[CassandraNode]:
        return [node for node in self.nodes if node.process is not None and node.process.running()]

    def session(self, keyspace: str | None = None) -> Any:
        """A session coordinated by the first running node."""
        return self.running()[0].session(keyspace)

    def wait_until_all_up(self, timeout: float = 120.0) -> None:
        """Until every running node holds every running node as NORMAL in gossip (it has settled)."""
        deadline = time.monotonic() + timeout
        want = {node.host for node in self.running()}
        seen: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            seen = {node.host: _peers_up(node) | {node.host} for node in self.running()}
            if all(hosts >= want for hosts in seen.values()):
                return
            time.sleep(0.5)
        raise ServiceError(f"cassandra cluster: gossip did not settle within {timeout:g} s; up per node: {seen}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


def _peers_up(node: CassandraNode) -> set[str]:
    """Hosts this node's gossip holds as NORMAL (``system_views.gossip_info``; a stopped node is shutdown)."""
    rows = node.session().execute("SELECT address, status_with_port FROM system_views.gossip_info")
    return {str(row.address) for row in rows if (row.status_with_port or "").startswith("NORMAL")}


def evenly_spaced_tokens(count: int) -> list[int]:
    """Murmur3 tokens splitting the ring into ``count`` equal primary ranges."""
    return [-(2**63) + i * (2**64 // count) for i in range(count)]


def common_free_port(hosts: tuple[str, ...] | list[str]) -> int:
    """A port free on every host (so each node of a cluster listens on the same one)."""
    for _ in range(50):
        port = free_port(hosts[0])
        if all(_bindable(host, port) for host in hosts[1:]):
            return port
    raise ServiceError(f"no TCP port free on all of {hosts}")


def _bindable(host: str, port: int) -> bool:
    import socket  # noqa: PLC0415

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def running_cluster(
    workdir: Path, size: int = 3, compat_mode: str = "CASSANDRA_4", version: str = DEFAULT_VERSION
) -> Iterator[CassandraCluster]:
    """Start ``size`` nodes on 127.0.0.1..size (the first seeds the others), yield the cluster, always stop it.

    The seed starts first; the others then start together (fixed tokens: nothing to stream).
    """
    if compat_mode not in COMPAT_MODES:
        raise ValueError(f"compat_mode must be one of {COMPAT_MODES}, not {compat_mode!r}")
    if not 1 <= size <= len(CLUSTER_HOSTS):
        raise ValueError(f"size must be 1..{len(CLUSTER_HOSTS)}, not {size}")
    hosts = list(CLUSTER_HOSTS[:size])
    port, storage_port = common_free_port(hosts), common_free_port(hosts)
    seed = f"{hosts[0]}:{storage_port}"
    cluster = CassandraCluster(
        [
            CassandraNode(
                workdir=workdir / f"node{i + 1}",
                compat_mode=compat_mode,
                version=version,
                host=host,
                port=port,
                storage_port=storage_port,
                seed=seed,
                initial_token=token,
            )
            for i, (host, token) in enumerate(zip(hosts, evenly_spaced_tokens(size), strict=True))
        ]
    )
    started = time.monotonic()
    try:
        cluster.nodes[0].start()
        with ThreadPoolExecutor(max_workers=size) as pool:
            for started_node in [pool.submit(node.start) for node in cluster.nodes[1:]]:
                started_node.result()  # a node that did not come up raises its ServiceError here
        cluster.wait_until_all_up()
        for node in cluster.nodes:
            node.startup_seconds = time.monotonic() - started
        yield cluster
    finally:
        cluster.stop()
