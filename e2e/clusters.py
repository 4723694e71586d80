"""The clusters the end-to-end suite runs on: a real local node, or kind where Docker exists.

Both give the suite the same things: kubectl and helm against the cluster,
the images built from this repository, a PostgreSQL and a ClickHouse the
runtime pods reach (and the test reads back), and a CQL session that writes
through the Cassandra Service.

- ``local``: devservices/node.py, a single real node on this machine
  (containerd, kubelet, kube-proxy, CoreDNS); images from
  ``scripts/build-images.sh``; the sinks are the host's own PostgreSQL and
  ClickHouse HTTP front (devservices), listening on the node's bridge address.
- ``kind``: a kind cluster; the same definitions built by ``docker build``
  (the Dockerfile; the Cassandra context from ``scripts/build-images.sh
  cassandra-context``) and loaded with ``kind load``; the sinks run on the
  host, listening on the kind network's gateway; CQL through the client
  Service as a NodePort. Written to the same contract, not run here (no
  Docker engine on the development machines).

``HEADRACE_E2E_CLUSTER`` picks one (``local`` or ``kind``); by default kind
where a Docker engine answers, else the local node.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cassandra.policies import RoundRobinPolicy

from devservices.clickhouse_http import ClickHouseFront
from devservices.node import CASSANDRA_IMAGE, HEADRACE_IMAGE, NODE_IP, POD_CIDR, host_problems, start_node
from devservices.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent


class Cluster(Protocol):
    """What the suite needs from a cluster provider."""

    name: str
    workdir: Path
    postgres: PostgresServer
    clickhouse: ClickHouseFront

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 120.0, stderr: bool = False
    ) -> str:
        """kubectl's output (with ``stderr``: its error output too)."""
        ...

    def helm(self, *args: str, timeout: float = 300.0) -> str: ...

    def image(self, name: str) -> tuple[str, str]:
        """(repository, tag) of the image ``headrace`` or ``cassandra`` as the cluster knows it."""
        ...

    def cql_session(self) -> Any:
        """A CQL session (cassandra-driver) that writes through the Cassandra client Service."""
        ...


def missing() -> str | None:
    """Why no cluster can run here (names the missing tools), or None."""
    choice = os.environ.get("HEADRACE_E2E_CLUSTER", "")
    if choice == "kind" or (not choice and _docker_answers()):
        lacking = [tool for tool in ("kind", "docker", "kubectl", "helm") if shutil.which(tool) is None]
        return f"kind needs {', '.join(lacking)} on PATH" if lacking else None
    problems = host_problems()
    return "the local node needs " + "; ".join(problems) if problems else None


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def _checked(
    command: list[str], *, stdin: str | None, timeout: float, check: bool, env: Any = None, stderr: bool = False
) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command[:4])} ... failed ({result.returncode}):\n{result.stderr.strip()}")
    return result.stdout + result.stderr if stderr else result.stdout


@dataclass
class _KubeCluster:
    """kubectl, helm and the images, the same on every provider; the host's sinks beside them."""

    workdir: Path
    postgres: PostgresServer
    clickhouse: ClickHouseFront
    kubeconfig: Path
    #: The folder holding kubectl and helm; None: take them from PATH.
    tools: Path | None

    def _tool(self, name: str) -> str:
        return str(self.tools / name) if self.tools is not None else name

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 120.0, stderr: bool = False
    ) -> str:
        command = [self._tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        return _checked(command, stdin=stdin, timeout=timeout, check=check, stderr=stderr)

    def helm(self, *args: str, timeout: float = 300.0) -> str:
        home = self.workdir / "helm"
        env = {**os.environ, **{f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
        command = [self._tool("helm"), "--kubeconfig", str(self.kubeconfig), *args]
        return _checked(command, stdin=None, timeout=timeout, check=True, env=env)

    def image(self, name: str) -> tuple[str, str]:
        reference = {"headrace": HEADRACE_IMAGE, "cassandra": CASSANDRA_IMAGE}[name]
        repository, tag = reference.rsplit(":", 1)
        return repository, tag


@dataclass
class LocalCluster(_KubeCluster):
    """The real node on this machine, with the host's sinks on the node's bridge address."""

    name: str = "local"

    def cql_session(self) -> Any:
        # The host routes to Services through kube-proxy's rules and to pods over the bridge.
        address = self.kubectl("get", "service", "cassandra-client", "-o", "jsonpath={.spec.clusterIP}").strip()
        return _cql_session([address], 9042, RoundRobinPolicy())


def _host_sinks(stack: ExitStack, workdir: Path, address: str, network: str) -> tuple[PostgresServer, ClickHouseFront]:
    """The host's PostgreSQL and ClickHouse front, listening on ``address``, trusting ``network``'s pods."""
    # The postgres system user must reach its folder: a world-traversable one under /tmp.
    pg_dir = Path(tempfile.mkdtemp(prefix="headrace-e2e-pg-"))
    pg_dir.chmod(0o711)
    stack.callback(shutil.rmtree, pg_dir, True)
    postgres = PostgresServer(pg_dir / "pg", host=address, trusted_network=network)
    postgres.start()
    stack.callback(postgres.stop)
    clickhouse = ClickHouseFront(workdir / "clickhouse", host=address)
    clickhouse.start()
    stack.callback(clickhouse.stop)
    return postgres, clickhouse


@contextmanager
def local_cluster(workdir: Path) -> Iterator[LocalCluster]:
    with ExitStack() as stack:
        node = start_node(workdir / "node")
        stack.callback(node.stop)
        postgres, clickhouse = _host_sinks(stack, workdir, NODE_IP, POD_CIDR)
        yield LocalCluster(
            workdir=workdir,
            postgres=postgres,
            clickhouse=clickhouse,
            kubeconfig=node.kubeconfig,
            tools=node.plane.assets_dir,
        )


@dataclass
class KindCluster(_KubeCluster):
    """A kind cluster; the host's sinks listen on the kind network's gateway, which its pods reach.

    Not run on the development machines (no Docker engine there): written to
    the same contract as the local node, so that a machine with Docker runs
    the same module.
    """

    name: str = "kind"

    def cql_session(self) -> Any:
        # Pods and ClusterIPs are not reachable from the host: the client Service as a NodePort on the
        # kind node's address, and only that address for the driver's connections.
        from cassandra.policies import WhiteListRoundRobinPolicy  # noqa: PLC0415

        self.kubectl("patch", "service", "cassandra-client", "-p", '{"spec": {"type": "NodePort"}}')
        port = int(self.kubectl("get", "service", "cassandra-client", "-o", "jsonpath={.spec.ports[0].nodePort}"))
        address = 'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}'
        node = self.kubectl("get", "nodes", "-o", address)
        return _cql_session([node], port, WhiteListRoundRobinPolicy([node]))


def _kind_network() -> tuple[str, str]:
    """(gateway, subnet) of the kind Docker network (IPv4)."""
    out = _checked(
        ["docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}\n{{end}}"],
        stdin=None, timeout=30, check=True,
    )  # fmt: skip
    for line in out.splitlines():
        gateway, _, subnet = line.partition(" ")
        if gateway.count(".") == 3:
            return gateway, subnet
    raise AssertionError(f"the kind network has no IPv4 gateway: {out!r}")


@contextmanager
def kind_cluster(workdir: Path) -> Iterator[KindCluster]:  # pragma: no cover - needs a Docker engine
    name = f"headrace-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = workdir / "kubeconfig"
    run = functools.partial(_checked, stdin=None, timeout=1800, check=True)
    with ExitStack() as stack:
        run(["kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig), "--wait", "180s"])
        stack.callback(run, ["kind", "delete", "cluster", "--name", name])
        # The same definitions as the local node's images: the Dockerfile, and the Cassandra context.
        context = workdir / "cassandra-image"
        run(["bash", str(REPO / "scripts" / "build-images.sh"), "cassandra-context", str(context)])
        for reference, folder in ((HEADRACE_IMAGE, REPO), (CASSANDRA_IMAGE, context)):
            run(["docker", "build", "-t", reference, str(folder)])
            run(["kind", "load", "docker-image", reference, "--name", name])
        postgres, clickhouse = _host_sinks(stack, workdir, *_kind_network())
        yield KindCluster(workdir=workdir, postgres=postgres, clickhouse=clickhouse, kubeconfig=kubeconfig, tools=None)


def _cql_session(contact_points: list[str], port: int, policy: Any) -> Any:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile  # noqa: PLC0415
    from cassandra.cluster import Cluster as CqlCluster  # noqa: PLC0415
    from cassandra.policies import ConstantReconnectionPolicy  # noqa: PLC0415

    profiles = {EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=policy, request_timeout=30)}
    # Pods come and go in these tests: try again every 2 s, not with the default backoff of up to 10 min.
    reconnect = ConstantReconnectionPolicy(2.0, max_attempts=None)
    cluster = CqlCluster(
        contact_points, port=port, execution_profiles=profiles, protocol_version=5, reconnection_policy=reconnect
    )
    return cluster.connect()


@contextmanager
def any_cluster(workdir: Path) -> Iterator[Cluster]:
    choice = os.environ.get("HEADRACE_E2E_CLUSTER", "")
    if choice == "kind" or (not choice and _docker_answers()):
        with kind_cluster(workdir) as cluster:
            yield cluster
    else:
        with local_cluster(workdir) as cluster:
            yield cluster
