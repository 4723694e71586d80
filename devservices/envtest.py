"""A real Kubernetes control plane for tests: etcd + kube-apiserver, the envtest way.

No Docker engine runs on Headrace's machines, so kind is out. Like
controller-runtime's envtest, this starts only etcd and kube-apiserver (built by
``scripts/build-envtest.sh``), with a throw-away CA, a serving certificate for
127.0.0.1, a service-account signing key, ``--authorization-mode=RBAC`` and a
cluster-admin client certificate (``O=system:masters``). There is no
controller-manager or scheduler: Deployments get no Pods, deleted namespaces
stay Terminating, nothing is garbage collected. Operator tests assert on the
objects the operator writes, which is what this gives them.

Binaries are looked up in ``$KUBEBUILDER_ASSETS`` (envtest's convention; the
per-binary ``TEST_ASSET_ETCD`` / ``TEST_ASSET_KUBE_APISERVER`` /
``TEST_ASSET_KUBECTL`` win over it), else in
``$HEADRACE_CACHE/envtest/<version>/``. Certificates come from the ``openssl``
CLI, which every Debian machine has, so the project needs no extra Python
dependency for them.

Every wait has a deadline; a process that fails to come up raises
``ServiceError`` naming the binary, its command line and the last lines of its
log, and whatever was already started is stopped.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import http.client
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from devservices.process import ManagedProcess, ServiceError, cache_dir, free_port, stop_process_group

#: The Kubernetes release scripts/build-envtest.sh builds by default.
DEFAULT_K8S_VERSION = os.environ.get("ENVTEST_K8S_VERSION", "1.34.4").removeprefix("v")

#: The binaries a control plane needs; helm and the extras are optional.
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kubectl")

#: The optional binaries that make workloads run: Pods scheduled, and Running on a kwok fake node.
WORKLOAD_BINARIES = ("kube-controller-manager", "kube-scheduler", "kwok")
#: The fake node kwok manages (selected by its annotation, so kwok never touches other nodes).
FAKE_NODE = "kwok-node-0"
_KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

#: envtest's per-binary overrides.
_ASSET_ENV = {"etcd": "TEST_ASSET_ETCD", "kube-apiserver": "TEST_ASSET_KUBE_APISERVER", "kubectl": "TEST_ASSET_KUBECTL"}

HOST = "127.0.0.1"
#: The ``kubernetes`` Service's address: the first of --service-cluster-ip-range.
KUBERNETES_SERVICE_IP = "10.0.0.1"
#: The apiserver needs about 5-10 s on 2 busy cores; 90 s leaves room for a loaded CI machine.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
#: A free port can be taken between picking and binding; retry the start that many times.
PORT_ATTEMPTS = 3


class MissingBinaryError(ServiceError):
    """A control-plane binary is not built; the pytest plugin turns this into a skip."""

    def __init__(self, binary: str, searched: Path) -> None:
        super().__init__(
            f"envtest: {binary} not found in {searched}; build it with scripts/build-envtest.sh "
            f"or point KUBEBUILDER_ASSETS at a folder that has it"
        )
        self.binary = binary
        self.searched = searched


class KubectlError(ServiceError):
    """kubectl (or helm) exited non-zero where the caller required success."""


def assets_dir(version: str = DEFAULT_K8S_VERSION) -> Path:
    """Where the binaries are: ``$KUBEBUILDER_ASSETS``, else the build script's cache folder."""
    explicit = os.environ.get("KUBEBUILDER_ASSETS")
    if explicit:
        return Path(explicit)
    return cache_dir() / "envtest" / version


def binary_path(name: str, assets: Path) -> Path:
    """The path of one binary, honouring envtest's ``TEST_ASSET_*`` overrides."""
    override = os.environ.get(_ASSET_ENV.get(name, ""), "")
    return Path(override) if override else assets / name


def missing_binaries(assets: Path | None = None) -> list[str]:
    """The required binaries that are absent or not executable, in start order."""
    folder = assets or assets_dir()
    return [name for name in REQUIRED_BINARIES if not os.access(binary_path(name, folder), os.X_OK)]


@dataclass(frozen=True)
class ControlPlane:
    """A running etcd + kube-apiserver and how to reach it as cluster-admin."""

    server: str
    kubeconfig: Path
    assets_dir: Path
    workdir: Path
    etcd_url: str
    #: Fake nodes where scheduled Pods turn Running; empty without ``workloads=True``.
    nodes: tuple[str, ...] = ()

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; ``check`` raises with kubectl's stderr on failure.

        ``check=False`` is for commands whose exit code is the answer, such as
        ``auth can-i`` (exit 1 means "no").
        """
        command = [str(binary_path("kubectl", self.assets_dir)), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(
                f"kubectl exited with code {result.returncode}\ncommand: {' '.join(command)}\n"
                f"stderr:\n{result.stderr.strip()}"
            )
        return result

    def helm(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run helm against this control plane, with its caches and config kept inside ``workdir``.

        helm is optional (tests of charts need it, the control plane does not);
        a missing binary raises ``MissingBinaryError``.
        """
        binary = binary_path("helm", self.assets_dir)
        if not os.access(binary, os.X_OK):
            raise MissingBinaryError("helm", self.assets_dir)
        home = self.workdir / "helm"
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        command = [str(binary), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
        if check and result.returncode != 0:
            raise KubectlError(
                f"helm exited with code {result.returncode}\ncommand: {' '.join(command)}\n"
                f"stderr:\n{result.stderr.strip()}"
            )
        return result

    def wait_established(self, crd: str, timeout: float = 60.0) -> None:
        """Wait until the CustomResourceDefinition ``crd`` is served.

        Polls the Established condition: ``kubectl wait --for=condition=Established`` fails at
        once, instead of waiting, when it runs before the API server wrote any condition
        ("status.conditions accessor error: <nil>").
        """
        deadline = time.monotonic() + timeout
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
        while True:
            result = self.kubectl("get", "crd", crd, "-o", f"jsonpath={jsonpath}", check=False)
            if result.returncode == 0 and result.stdout.strip() == "True":
                return
            if time.monotonic() > deadline:
                raise KubectlError(f"CRD {crd} not Established after {timeout:.0f} s: {result.stderr.strip()}")
            time.sleep(0.2)

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` with ``manifest`` (YAML or JSON) on stdin."""
        return self.kubectl("apply", "-f", "-", stdin=manifest)


# --- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pki:
    """File paths of the throw-away PKI of one control plane."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    sa_key: Path
    sa_pub: Path
    #: The address the apiserver serves on (its certificate names it).
    address: str = HOST


def _openssl(*args: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    except FileNotFoundError as exc:
        raise ServiceError("envtest: the openssl CLI is missing (apt-get install -y openssl)") from exc
    except subprocess.CalledProcessError as exc:
        raise ServiceError(f"envtest: openssl {' '.join(args)} failed:\n{exc.stderr.strip()}") from exc


def _sign_leaf(folder: Path, name: str, subject: str, extensions: Sequence[str]) -> tuple[Path, Path]:
    """A P-256 key and a certificate for ``subject`` signed by the CA in ``folder``."""
    key, csr, cert, ext = (folder / f"{name}{suffix}" for suffix in (".key", ".csr", ".crt", ".ext"))
    ext.write_text("\n".join(extensions) + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", csr.name, "-subj", subject,
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(secrets.randbits(63)), "-days", "30", "-extfile", ext.name, "-out", cert.name,
        cwd=folder,
    )  # fmt: skip
    return cert, key


def _write_pki(folder: Path, address: str = HOST) -> _Pki:
    """CA, serving cert, cluster-admin client cert and service-account key.

    The serving certificate names 127.0.0.1, localhost and ``address``; off
    loopback (a real node's pods reach it) also the ``kubernetes`` Service's
    first address and DNS names, as pods call it through them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=headrace-envtest-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=folder,
    )  # fmt: skip
    server_cert, server_key = _sign_leaf(
        folder,
        "apiserver",
        "/CN=kube-apiserver",
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=" + ",".join(_server_names(address)),
        ],
    )
    # O=system:masters is bound to cluster-admin by the apiserver itself, so no RBAC setup is needed.
    client_cert, client_key = _sign_leaf(
        folder,
        "admin",
        "/O=system:masters/CN=headrace-envtest-admin",
        ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth"],
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)
    return _Pki(
        ca_cert=folder / "ca.crt",
        ca_key=folder / "ca.key",
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        sa_key=folder / "sa.key",
        sa_pub=folder / "sa.pub",
        address=address,
    )


def _server_names(address: str) -> list[str]:
    names = [f"IP:{HOST}", "DNS:localhost"]
    if address != HOST:
        names += [f"IP:{address}", f"IP:{KUBERNETES_SERVICE_IP}"]
        names += [f"DNS:{name}" for name in ("kubernetes", "kubernetes.default", "kubernetes.default.svc")]
        names.append("DNS:kubernetes.default.svc.cluster.local")
    return names


def _write_kubeconfig(path: Path, server: str, pki: _Pki) -> None:
    """A kubeconfig with the certificates embedded, so it can be copied elsewhere and still work."""

    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "envtest", "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": "envtest-admin",
                "user": {"client-certificate-data": b64(pki.client_cert), "client-key-data": b64(pki.client_key)},
            }
        ],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "envtest-admin"}}],
        "current-context": "envtest",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


# --- processes ------------------------------------------------------------------------------


def _etcd_healthy(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status == 200 and json.loads(response.read()).get("health") == "true"
    finally:
        connection.close()


@functools.cache
def _etcd_flags(binary: Path) -> tuple[str, ...]:
    """Speed-ups the etcd at hand knows: ``--unsafe-no-fsync`` exists in 3.5+, not in Debian's 3.4.

    A test cluster's data dies with the test, so fsync buys nothing but latency.
    """
    try:
        usage = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return ("--unsafe-no-fsync",) if "--unsafe-no-fsync" in usage.stdout + usage.stderr else ()


def _start_etcd(workdir: Path, assets: Path) -> tuple[ManagedProcess, str]:
    binary = binary_path("etcd", assets)
    for attempt in range(PORT_ATTEMPTS):
        client_url, peer_url = f"http://{HOST}:{free_port()}", f"http://{HOST}:{free_port()}"
        process = ManagedProcess(
            name="etcd",
            command=[
                str(binary),
                "--name=envtest",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=envtest={peer_url}",
                "--initial-cluster-state=new",
                *_etcd_flags(binary),
            ],
            log_file=workdir / "logs" / "etcd.log",
        )
        process.start()
        try:
            process.wait_until(functools.partial(_etcd_healthy, client_url), timeout=START_TIMEOUT_S)
        except ServiceError as exc:
            if attempt + 1 < PORT_ATTEMPTS and "address already in use" in str(exc):
                continue
            raise
        return process, client_url
    raise AssertionError("unreachable")  # pragma: no cover


def _api_status(server_port: int, pki: _Pki, path: str) -> int:
    """HTTP status of a GET on the apiserver as cluster-admin."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    connection = http.client.HTTPSConnection(pki.address, server_port, context=context, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _apiserver_ready(server_port: int, pki: _Pki) -> bool:
    """/readyz answers ok and the ``default`` namespace exists (created just after the hooks finish)."""
    return all(_api_status(server_port, pki, path) == 200 for path in ("/readyz", "/api/v1/namespaces/default"))


def _apiserver_command(binary: Path, port: int, etcd_url: str, pki: _Pki, workdir: Path) -> list[str]:
    """kube-apiserver flags as envtest sets them, plus what an operator test needs.

    Off loopback (``pki.address``: a real node's bridge) it serves there, and
    admits Pods with their ServiceAccount tokens as a real cluster does.
    """
    real_node = (
        # kubectl logs / exec reach the kubelet at the node's address, not a host name to look up.
        ["--kubelet-preferred-address-types=InternalIP"]
        if pki.address != HOST
        else [
            # No controller-manager creates the "default" ServiceAccount, so its admission plugin
            # would reject every Pod; envtest disables it for the same reason.
            "--disable-admission-plugins=ServiceAccount",
        ]
    )
    return [
        str(binary),
        f"--advertise-address={pki.address}",
        f"--bind-address={pki.address}",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        f"--tls-cert-file={pki.server_cert}",
        f"--tls-private-key-file={pki.server_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--etcd-servers={etcd_url}",
        "--service-cluster-ip-range=10.0.0.0/24",
        f"--service-account-issuer=https://{pki.address}:{port}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        *real_node,
    ]


def _start_apiserver(workdir: Path, assets: Path, etcd_url: str, pki: _Pki) -> tuple[ManagedProcess, int]:
    binary = binary_path("kube-apiserver", assets)
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        process = ManagedProcess(
            name="kube-apiserver",
            command=_apiserver_command(binary, port, etcd_url, pki, workdir),
            log_file=workdir / "logs" / "kube-apiserver.log",
        )
        process.start()
        try:
            process.wait_until(functools.partial(_apiserver_ready, port, pki), timeout=START_TIMEOUT_S, interval=0.2)
        except ServiceError as exc:
            if attempt + 1 < PORT_ATTEMPTS and "address already in use" in str(exc):
                continue
            raise
        return process, port
    raise AssertionError("unreachable")  # pragma: no cover


# --- workloads: controller-manager, scheduler, kwok (optional) ------------------------------


def _component_healthy(port: int) -> bool:
    """/healthz of kube-controller-manager or kube-scheduler on their own secure port.

    They serve it with a self-signed certificate generated at start, and
    /healthz is on their always-allowed paths, so no client identity is needed.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(HOST, port, context=context, timeout=5)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status == 200 and response.read() == b"ok"
    finally:
        connection.close()


def _controller_manager_ready(port: int, server_port: int, pki: _Pki) -> bool:
    """Healthy, and its controllers work: the ServiceAccount controller has made ``default/default``."""
    default_sa = "/api/v1/namespaces/default/serviceaccounts/default"
    return _component_healthy(port) and _api_status(server_port, pki, default_sa) == 200


def _start_component(
    name: str, command: list[str], workdir: Path, ready: Callable[[], bool], timeout: float
) -> ManagedProcess:
    process = ManagedProcess(name=name, command=command, log_file=workdir / "logs" / f"{name}.log")
    process.start()
    process.wait_until(ready, timeout=timeout, interval=0.25)
    return process


def _fake_node_manifest(name: str) -> str:
    """A Node that only kwok manages; kwok fills its status (Ready, allocatable, addresses, lease)."""
    key, value = _KWOK_ANNOTATION
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
        },
    }
    return json.dumps(node)


def _node_ready(plane: ControlPlane, name: str) -> bool:
    result = plane.kubectl(
        "get", "node", name, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False
    )
    return result.stdout.strip() == "True"


def _start_workloads(plane: ControlPlane, pki: _Pki, server_port: int, *, fake_node: bool) -> list[ManagedProcess]:
    """kube-controller-manager, kube-scheduler and (``fake_node``) kwok with one fake node; in start order.

    The controller-manager brings ReplicaSets, Pods, garbage collection,
    namespace deletion and the ``default`` ServiceAccounts; the scheduler binds
    Pods; kwok plays the kubelet of the fake node, so bound Pods turn Running.
    Without the fake node, a real kubelet joins later (devservices/node.py).
    """
    workdir, folder = plane.workdir, plane.assets_dir
    kubeconfig = f"--kubeconfig={plane.kubeconfig}"
    started: list[ManagedProcess] = []
    try:
        port = free_port()
        started.append(
            _start_component(
                "kube-controller-manager",
                [
                    str(binary_path("kube-controller-manager", folder)),
                    kubeconfig,
                    f"--authentication-kubeconfig={plane.kubeconfig}",
                    f"--authorization-kubeconfig={plane.kubeconfig}",
                    f"--bind-address={HOST}",
                    f"--secure-port={port}",
                    f"--cert-dir={workdir / 'kcm-certs'}",
                    "--leader-elect=false",
                    "--controllers=*",
                    f"--root-ca-file={pki.ca_cert}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    "--use-service-account-credentials=false",
                ],
                workdir,
                functools.partial(_controller_manager_ready, port, server_port, pki),
                START_TIMEOUT_S,
            )
        )
        port = free_port()
        started.append(
            _start_component(
                "kube-scheduler",
                [
                    str(binary_path("kube-scheduler", folder)),
                    kubeconfig,
                    f"--authentication-kubeconfig={plane.kubeconfig}",
                    f"--authorization-kubeconfig={plane.kubeconfig}",
                    f"--bind-address={HOST}",
                    f"--secure-port={port}",
                    f"--cert-dir={workdir / 'scheduler-certs'}",
                    "--leader-elect=false",
                ],
                workdir,
                functools.partial(_component_healthy, port),
                START_TIMEOUT_S,
            )
        )
        if not fake_node:
            return started
        key, value = _KWOK_ANNOTATION
        plane.apply(_fake_node_manifest(FAKE_NODE))
        # An explicit, empty configuration: kwok's default ~/.kwok/kwok.yaml would depend on the
        # user's home; without Stage objects kwok uses its built-in node and pod lifecycles.
        (workdir / "kwok.yaml").write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n"
        )
        started.append(
            _start_component(
                "kwok",
                [
                    str(binary_path("kwok", folder)),
                    kubeconfig,
                    f"--config={workdir / 'kwok.yaml'}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={key}={value}",
                    "--cidr=10.244.0.1/24",
                    "--node-ip=10.244.0.1",
                    "--node-lease-duration-seconds=40",
                ],
                workdir,
                functools.partial(_node_ready, plane, FAKE_NODE),
                START_TIMEOUT_S,
            )
        )
    except BaseException:
        _stop_all(started)
        raise
    return started


def start_control_plane(
    workdir: Path, assets: Path | None = None, *, workloads: bool = False, node_address: str | None = None
) -> tuple[ControlPlane, list[ManagedProcess]]:
    """Start etcd then kube-apiserver (then the workload components); return them in start order.

    ``node_address``: the control plane of a real node (devservices/node.py):
    the apiserver serves on that address (which the node's pods reach), Pods
    get ServiceAccount tokens, and no kwok fake node is made.

    The caller owns the processes (stop them in reverse order). On failure,
    whatever started is stopped before the error propagates.
    """
    folder = assets or assets_dir()
    fake_node = workloads and node_address is None
    needed = (*REQUIRED_BINARIES, *(WORKLOAD_BINARIES if workloads else ()))
    for name in (name for name in needed if fake_node or name != "kwok"):
        if not os.access(binary_path(name, folder), os.X_OK):
            raise MissingBinaryError(name, folder)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # Every start is a new cluster: stale etcd data would carry another run's peer URL and objects.
    shutil.rmtree(workdir / "etcd", ignore_errors=True)
    pki = _write_pki(workdir / "pki", node_address or HOST)
    started: list[ManagedProcess] = []
    try:
        etcd, etcd_url = _start_etcd(workdir, folder)
        started.append(etcd)
        apiserver, port = _start_apiserver(workdir, folder, etcd_url, pki)
        started.append(apiserver)
    except BaseException:
        _stop_all(started)
        raise
    server = f"https://{pki.address}:{port}"
    kubeconfig = workdir / "kubeconfig"
    _write_kubeconfig(kubeconfig, server, pki)
    plane = ControlPlane(server=server, kubeconfig=kubeconfig, assets_dir=folder, workdir=workdir, etcd_url=etcd_url)
    if workloads:
        try:
            started.extend(_start_workloads(plane, pki, port, fake_node=fake_node))
        except BaseException:
            _stop_all(started)
            raise
        if fake_node:
            plane = dataclasses.replace(plane, nodes=(FAKE_NODE,))
    return plane, started


def _stop_all(processes: Sequence[ManagedProcess]) -> None:
    """Stop in reverse start order: the apiserver before the etcd it writes to."""
    for process in reversed(processes):
        process.stop(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_control_plane(
    workdir: Path, assets: Path | None = None, *, workloads: bool = False
) -> Iterator[ControlPlane]:
    """A control plane for the duration of the ``with`` block; stopped on exit, also on failure.

    ``workloads=True`` adds kube-controller-manager, kube-scheduler and kwok with
    one fake node (``ControlPlane.nodes``), so Deployments get Running Pods.

    Logs stay in ``workdir/logs`` after exit, for post-mortems of failed tests.
    """
    plane, processes = start_control_plane(workdir, assets, workloads=workloads)
    try:
        yield plane
    finally:
        _stop_all(processes)


# --- command line (python -m devservices envtest-up | envtest-down) ---------------------------

_STATE_FILE = "envtest.json"


def pid_runs(pid: int, binary: str) -> bool:
    """True if ``pid`` is alive and still runs ``binary`` (a recycled pid must not be killed)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    return Path(cmdline).name == binary


def cli_up(state_dir: Path, workloads: bool | None = None) -> None:
    """Start a detached control plane under ``state_dir``; record pids; print the kubeconfig path.

    ``workloads`` (default: env ``ENVTEST_WORKLOADS=1``) also starts the
    controller-manager, scheduler and kwok.
    """
    if workloads is None:
        workloads = os.environ.get("ENVTEST_WORKLOADS", "") in ("1", "true", "yes")
    state_file = state_dir / _STATE_FILE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if all(pid_runs(entry["pid"], entry["binary"]) for entry in state["processes"]):
            print(f"envtest already running: export KUBECONFIG={state['kubeconfig']}")
            return
        cli_down(state_dir)
    started = time.monotonic()
    try:
        plane, processes = start_control_plane(state_dir, workloads=workloads)
    except ServiceError as exc:
        raise SystemExit(str(exc)) from exc
    state = {
        "server": plane.server,
        "kubeconfig": str(plane.kubeconfig),
        "assets_dir": str(plane.assets_dir),
        "processes": [
            {"name": p.name, "binary": Path(p.command[0]).name, "pid": p.pid, "log": str(p.log_file)} for p in processes
        ],
    }
    state_file.write_text(json.dumps(state, indent=2))
    print(f"envtest up in {time.monotonic() - started:.1f}s: {plane.server}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"export KUBEBUILDER_ASSETS={plane.assets_dir}")


def cli_down(state_dir: Path) -> None:
    """Stop what ``cli_up`` started, by the pids it recorded (apiserver first)."""
    state_file = state_dir / _STATE_FILE
    if not state_file.exists():
        print("envtest: nothing recorded as running")
        return
    state = json.loads(state_file.read_text())
    for entry in reversed(state["processes"]):
        if pid_runs(entry["pid"], entry["binary"]):
            stop_process_group(entry["pid"], timeout=STOP_TIMEOUT_S)
            print(f"envtest: stopped {entry['name']} (pid {entry['pid']})")
    state_file.unlink()
