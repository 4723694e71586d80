"""A real single-node Kubernetes cluster on this machine, without Docker and without a registry.

The control plane is envtest's (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler; devservices/envtest.py), served on the node's bridge address
instead of loopback. Beside it run containerd + runc, a kubelet and kube-proxy
(built from the same Kubernetes release by ``scripts/build-envtest.sh node``),
the CNI bridge / host-local / portmap / loopback plugins from Debian's
``containernetworking-plugins``, CoreDNS (cluster DNS for the manifests'
Service names) and a pool of hostPath PersistentVolumes behind a default
StorageClass, so StatefulSets' volumeClaimTemplates bind.

Images come from ``scripts/build-images.sh`` (OCI archives in the cache) and
are imported into containerd at start; nothing is pulled.

Traffic stays on this machine: pods live on the bridge ``hr0``
(``10.244.0.0/24``, the host is ``10.244.0.1``), their only route besides the
bridge is to the Service range through the host, nothing is masqueraded to
outside addresses, CoreDNS forwards no names outside the cluster, and a
FORWARD rule drops anything from the bridge bound elsewhere.

Needs root, cgroups, overlayfs and the Debian packages ``containerd runc
containernetworking-plugins iptables``; :func:`host_problems` names what is
missing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devservices.envtest import (
    STOP_TIMEOUT_S,
    ControlPlane,
    assets_dir,
    binary_path,
    pid_runs,
    start_control_plane,
)
from devservices.process import ManagedProcess, ServiceError, cache_dir, free_port, stop_process_group

NODE_NAME = "headrace-node"
BRIDGE = "hr0"
POD_CIDR = "10.244.0.0/24"
#: The host's address on the bridge: the node's InternalIP, where pods reach the apiserver and host services.
NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.0.0.0/24"
DNS_SERVICE_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN_DIR = Path("/usr/lib/cni")
#: containerd's sockets live here: unix socket paths must stay short (108 bytes).
RUN_DIR = Path("/run/headrace-node")
STORAGE_CLASS = "local-path"
#: hostPath PersistentVolumes made at start (each StatefulSet pod's claim takes one).
PV_COUNT = 12
PV_SIZE = "4Gi"
#: Images scripts/build-images.sh builds; their archives name the references below.
IMAGES = ("pause", "coredns", "cassandra", "headrace")
PAUSE_IMAGE = "localhost/pause:headrace"
COREDNS_IMAGE = "localhost/coredns:v1.14.7"
HEADRACE_IMAGE = "localhost/headrace:dev"
CASSANDRA_IMAGE = "localhost/cassandra:5.0.8"
START_TIMEOUT_S = 120.0
#: The iptables rule that keeps pods' traffic on this machine.
_EGRESS_RULE = ("FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP", "-m", "comment", "--comment", "headrace-node")

#: Debian packages that provide each host tool.
_HOST_TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "mount": "mount",
}


class NodeUnavailableError(ServiceError):
    """The host cannot run the node; the message names what is missing."""


def host_problems(assets: Path | None = None, images: Path | None = None) -> list[str]:
    """What this host lacks to run the node, each with how to get it; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root (containerd, the kubelet and the bridge need it)")
    cgroups = Path("/sys/fs/cgroup")
    if not (cgroups / "memory").is_dir() and not (cgroups / "cgroup.controllers").exists():
        problems.append("cgroups (neither a v1 memory hierarchy nor cgroup v2 is mounted at /sys/fs/cgroup)")
    elif not os.access(cgroups / "memory" if (cgroups / "memory").is_dir() else cgroups, os.W_OK):
        problems.append("writable cgroups (/sys/fs/cgroup is read-only here)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        problems.append("overlayfs (the kernel lists no 'overlay' file system; containerd's snapshotter needs it)")
    for tool, package in _HOST_TOOLS.items():
        if shutil.which(tool) is None:
            problems.append(f"{tool} (apt-get install -y {package})")
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not (CNI_BIN_DIR / plugin).exists():
            problems.append(f"the CNI plugin {plugin} (apt-get install -y containernetworking-plugins)")
    folder = assets or assets_dir()
    for binary in ("kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler"):
        if not os.access(binary_path(binary, folder), os.X_OK):
            problems.append(f"{binary} (scripts/build-envtest.sh all node)")
    image_folder = images or images_dir()
    for image in IMAGES:
        if image_archive(image, image_folder) is None:
            problems.append(f"the {image} image (scripts/build-images.sh {image})")
    return problems


def images_dir() -> Path:
    return cache_dir() / "images"


def image_archive(name: str, folder: Path) -> Path | None:
    """The newest OCI archive scripts/build-images.sh wrote for ``name``; None when never built."""
    current = folder / f"{name}.current"
    if not current.exists():
        return None
    archive = folder / current.read_text().strip()
    return archive if archive.exists() else None


@dataclass
class LocalNode:
    """A running single-node cluster and how to reach it as cluster-admin."""

    plane: ControlPlane
    workdir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, check=check, timeout=timeout)

    def stop(self) -> None:
        stop_node(self.workdir, [(p.name, p.stop) for p in self.processes])


# --- host set-up and tear-down ------------------------------------------------------------------


def _run(*command: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise ServiceError(f"node: {' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value)


def _network_up() -> None:
    """The bridge with the node's address, forwarding on, and the rule that keeps pods' traffic here."""
    if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    if NODE_IP not in _run("ip", "-4", "addr", "show", BRIDGE).stdout:
        _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    _sysctl("net.ipv4.ip_forward", "1")
    with contextlib.suppress(OSError):
        # kube-proxy's Service rules must see bridged traffic (pod -> Service -> pod on one bridge).
        _sysctl("net.bridge.bridge-nf-call-iptables", "1")
    if _run("iptables", "-C", *_EGRESS_RULE, check=False).returncode != 0:
        _run("iptables", "-I", *_EGRESS_RULE)


def _network_down() -> None:
    for _ in range(10):  # the rule is inserted once per start; a few leftovers at most
        if _run("iptables", "-C", *_EGRESS_RULE, check=False).returncode != 0:
            break
        _run("iptables", "-D", *_EGRESS_RULE, check=False)
    _run("ip", "link", "delete", BRIDGE, check=False)
    netns = Path("/var/run/netns")
    if netns.is_dir():
        for entry in netns.glob("cni-*"):
            _run("ip", "netns", "delete", entry.name, check=False)


def _kill_shims(socket: Path) -> None:
    """containerd's shims outlive containerd (they detach): kill those of this node, and their containers."""
    marker = str(socket).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(proc.name), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def _unmount_under(folder: Path) -> None:
    """Unmount everything mounted below ``folder`` (overlay roots, volumes, netns), deepest first."""
    prefix = str(folder.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        _run("umount", "-l", target, check=False)


def _kill_containers(socket: Path) -> None:
    if not socket.exists():
        return
    ctr = ("ctr", "--address", str(socket), "--namespace", "k8s.io")
    tasks = _run(*ctr, "tasks", "list", "--quiet", check=False).stdout.split()
    for task in tasks:
        _run(*ctr, "tasks", "kill", "--signal", "SIGKILL", "--all", task, check=False)


# --- containerd -----------------------------------------------------------------------------------


def _containerd_config(workdir: Path) -> str:
    socket = RUN_DIR / "containerd.sock"
    return f"""version = 2
root = "{workdir / "containerd"}"
state = "{RUN_DIR / "state"}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  enable_selinux = false
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which sandboxed hosts (gVisor) refuse even to root;
  # capped at containerd's own value, the kubelet's negative scores do not fail every container start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{workdir / "cni"}"
"""


def _cni_config(workdir: Path) -> dict[str, object]:
    """Pods on the bridge; routes only to the Service range (through the host); no masquerading."""
    return {
        "cniVersion": "0.4.0",
        "name": "headrace-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(workdir / "cni-ipam"),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": SERVICE_CIDR}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _start_containerd(workdir: Path) -> ManagedProcess:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (workdir / "cni").mkdir(parents=True, exist_ok=True)
    (workdir / "cni" / "10-headrace.conflist").write_text(json.dumps(_cni_config(workdir), indent=2))
    config = workdir / "containerd.toml"
    config.write_text(_containerd_config(workdir))
    process = ManagedProcess("containerd", ["containerd", "--config", str(config)], workdir / "logs" / "containerd.log")
    process.start()
    socket = RUN_DIR / "containerd.sock"
    process.wait_until(
        lambda: socket.exists() and _run("ctr", "--address", str(socket), "version", check=False).returncode == 0,
        timeout=START_TIMEOUT_S,
    )
    return process


def import_images(images: Path, names: Sequence[str] = IMAGES) -> None:
    """Import the built images into containerd's ``k8s.io`` namespace (where the kubelet looks)."""
    socket = RUN_DIR / "containerd.sock"
    for name in names:
        archive = image_archive(name, images)
        if archive is None:
            raise NodeUnavailableError(f"node: the {name} image is not built (scripts/build-images.sh {name})")
        _run(
            "ctr", "--address", str(socket), "--namespace", "k8s.io", "images", "import", "--no-unpack", str(archive),
            timeout=600,
        )  # fmt: skip


# --- kubelet and kube-proxy -------------------------------------------------------------------


def _kubelet_config(workdir: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{RUN_DIR / 'containerd.sock'}",
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "failCgroupV1": False,
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": free_port(),
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # Pods with dnsPolicy Default get no outside resolver: names outside the cluster do not resolve.
        "resolvConf": "",
        "podCIDR": POD_CIDR,
        "maxPods": 60,
        "serializeImagePulls": False,
        # The images are imported, not pulled: never collect them, whatever the disk holds.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "1Gi", "imagefs.available": "1Gi"},
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,
        "localStorageCapacityIsolation": True,
        "volumePluginDir": str(workdir / "kubelet-plugins"),
        "staticPodPath": "",
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "10s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
    }


def _node_ready(plane: ControlPlane) -> bool:
    result = plane.kubectl(
        "get", "node", NODE_NAME, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False
    )
    return result.stdout.strip() == "True"


def _start_kubelet(workdir: Path, plane: ControlPlane) -> ManagedProcess:
    config = workdir / "kubelet.yaml"
    config.write_text(yaml.safe_dump(_kubelet_config(workdir)))
    process = ManagedProcess(
        "kubelet",
        [
            str(binary_path("kubelet", plane.assets_dir)),
            f"--config={config}",
            f"--kubeconfig={plane.kubeconfig}",
            f"--root-dir={workdir / 'kubelet'}",
            f"--cert-dir={workdir / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ],
        workdir / "logs" / "kubelet.log",
    )
    process.start()
    process.wait_until(lambda: _node_ready(plane), timeout=START_TIMEOUT_S, interval=1.0)
    return process


def _start_kube_proxy(workdir: Path, plane: ControlPlane) -> ManagedProcess:
    config = workdir / "kube-proxy.yaml"
    health = free_port()
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "clientConnection": {"kubeconfig": str(plane.kubeconfig)},
                "hostnameOverride": NODE_NAME,
                "bindAddress": NODE_IP,
                "healthzBindAddress": f"127.0.0.1:{health}",
                "metricsBindAddress": f"127.0.0.1:{free_port()}",
                "mode": "iptables",
                "clusterCIDR": POD_CIDR,
                # Service traffic between pods on one bridge needs SNAT to come back the same way;
                # it is rewritten to the bridge address only, never to an outside one.
                "iptables": {"masqueradeAll": True},
                # Leave the host's conntrack table size alone.
                "conntrack": {"maxPerCore": 0},
            }
        )
    )
    process = ManagedProcess(
        "kube-proxy",
        [str(binary_path("kube-proxy", plane.assets_dir)), f"--config={config}", "--v=1"],
        workdir / "logs" / "kube-proxy.log",
    )
    process.start()
    process.wait_until(lambda: _proxy_healthy(health), timeout=START_TIMEOUT_S, interval=0.5)
    return process


def _proxy_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# --- cluster add-ons: DNS and storage ---------------------------------------------------------------

_COREFILE = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        pods insecure
    }}
    cache 5
}}
"""


def _addons(workdir: Path) -> list[dict[str, object]]:
    """CoreDNS (names inside the cluster only: it forwards nothing) and the hostPath volume pool."""
    labels = {"k8s-app": "kube-dns"}
    ns = "kube-system"
    objects: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "headrace-node:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "headrace-node:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "headrace-node:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": _COREFILE},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-cluster-critical",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": COREDNS_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                # Port 53 needs root or an ambient capability; root in this test cluster.
                                "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
                                "ports": [
                                    {"containerPort": 53, "protocol": "UDP", "name": "dns"},
                                    {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                                "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "20m"}},
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    ]
    for index in range(PV_COUNT):
        path = workdir / "volumes" / f"pv-{index}"
        path.mkdir(parents=True, exist_ok=True)
        # Any pod uid writes here (hostPath volumes ignore fsGroup), as with the common local-path provisioner.
        path.chmod(0o777)
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"headrace-node-pv-{index}"},
                "spec": {
                    "capacity": {"storage": PV_SIZE},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": STORAGE_CLASS,
                    "hostPath": {"path": str(path), "type": "Directory"},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
                                    ]
                                }
                            ]
                        }
                    },
                },
            }
        )
    return objects


def _install_addons(node: LocalNode) -> None:
    manifest = "\n---\n".join(json.dumps(item) for item in _addons(node.workdir))
    node.plane.kubectl("apply", "-f", "-", stdin=manifest)
    node.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", f"--timeout={int(START_TIMEOUT_S)}s")


# --- start and stop -----------------------------------------------------------------------------------


def start_node(workdir: Path, assets: Path | None = None, images: Path | None = None) -> LocalNode:
    """Start the whole node under ``workdir``; on failure stop whatever started and raise."""
    problems = host_problems(assets, images)
    if problems:
        raise NodeUnavailableError("node: this host cannot run a real node; it lacks: " + "; ".join(problems))
    workdir = workdir.resolve()
    socket = RUN_DIR / "containerd.sock"
    if socket.exists() and _run("ctr", "--address", str(socket), "version", check=False).returncode == 0:
        raise NodeUnavailableError(
            f"node: another node runs on this machine (its containerd answers on {socket}); stop it first "
            "(make node-down)"
        )
    # A previous run killed before its stop leaves mounts, shims and the bridge behind.
    stop_node(workdir, [])
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "logs").mkdir(parents=True)
    processes: list[ManagedProcess] = []
    try:
        _network_up()
        processes.append(_start_containerd(workdir))
        import_images(images or images_dir())
        plane, plane_processes = start_control_plane(workdir / "plane", assets, workloads=True, node_address=NODE_IP)
        processes.extend(plane_processes)
        processes.append(_start_kubelet(workdir, plane))
        processes.append(_start_kube_proxy(workdir, plane))
        node = LocalNode(plane=plane, workdir=workdir, processes=processes)
        _install_addons(node)
    except BaseException:
        with contextlib.suppress(ServiceError):  # the start's own error is the one to see
            stop_node(workdir, [(p.name, p.stop) for p in processes])
        raise
    return node


def stop_node(workdir: Path, processes: Sequence[tuple[str, Callable[[], None]]]) -> None:
    """Stop everything the node started: processes, containers, mounts, network; safe to repeat.

    ``processes``: (name, stop) in start order. The kubelet and kube-proxy stop
    first (nothing restarts containers then), the containers are killed, then
    the control plane, containerd and its detached shims.
    """
    socket = RUN_DIR / "containerd.sock"
    by_name = dict(processes)
    steps: list[tuple[str, Callable[[], object]]] = [(n, by_name[n]) for n in ("kube-proxy", "kubelet") if n in by_name]
    steps.append(("containers", functools.partial(_kill_containers, socket)))
    steps += [(n, stop) for n, stop in reversed(processes) if n not in ("kube-proxy", "kubelet", "containerd")]
    if "containerd" in by_name:
        steps.append(("containerd", by_name["containerd"]))
    steps.append(("shims", functools.partial(_kill_shims, socket)))
    proxy = binary_path("kube-proxy", assets_dir())
    if proxy.exists():
        steps.append(("kube-proxy --cleanup", functools.partial(_run, str(proxy), "--cleanup", check=False)))
    steps += [
        ("mounts", functools.partial(_unmount_under, workdir)),
        ("run mounts", functools.partial(_unmount_under, RUN_DIR)),
        ("network", _network_down),
    ]
    # Every step runs, whatever an earlier one did: a half-stopped node would hold mounts and the bridge.
    failures = []
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # reported together below
            failures.append(f"{what}: {exc}")
    if failures:
        raise ServiceError("node: stopping left work undone: " + "; ".join(failures))


@contextlib.contextmanager
def running_node(workdir: Path) -> Iterator[LocalNode]:
    """A node for the ``with`` block; everything it started is stopped on exit, also on failure."""
    node = start_node(workdir)
    try:
        yield node
    finally:
        node.stop()


# --- command line (python -m devservices node-up | node-down) ---------------------------------------

_STATE_FILE = "node.json"


def cli_up(state_dir: Path) -> None:
    """Start a detached node under ``state_dir`` and print how to reach it."""
    state_file = state_dir / _STATE_FILE
    if state_file.exists():
        cli_down(state_dir)
    started = time.monotonic()
    try:
        node = start_node(state_dir / "node")
    except ServiceError as exc:
        raise SystemExit(str(exc)) from exc
    state = {
        "kubeconfig": str(node.kubeconfig),
        "workdir": str(node.workdir),
        "processes": [{"name": p.name, "pid": p.pid, "command": p.command[0]} for p in node.processes],
    }
    state_file.write_text(json.dumps(state, indent=2))
    print(f"node {NODE_NAME} up in {time.monotonic() - started:.0f}s: {node.plane.server}")
    print(f"export KUBECONFIG={node.kubeconfig}")
    print(f"export PATH={node.plane.assets_dir}:$PATH   # kubectl and helm")


def _stop_recorded(pid: int, binary: str) -> None:
    if pid_runs(pid, binary):
        stop_process_group(pid, timeout=STOP_TIMEOUT_S)


def cli_down(state_dir: Path) -> None:
    """Stop what ``cli_up`` started, by the pids it recorded."""
    state_file = state_dir / _STATE_FILE
    if not state_file.exists():
        print("node: nothing recorded as running")
        return
    state = json.loads(state_file.read_text())
    processes = [
        (entry["name"], functools.partial(_stop_recorded, entry["pid"], Path(entry["command"]).name))
        for entry in state["processes"]
    ]
    stop_node(Path(state["workdir"]), processes)
    state_file.unlink()
    print(f"node {NODE_NAME} stopped")
