"""The kubelet: keeps the pods bound to this node running as containers, and reports them.

* An informer on pods with ``fieldSelector=spec.nodeName=NODE`` feeds a work queue of pod keys;
  ``reconcile(key)`` is level-triggered: it reads the pod from the cache and the pod's containers
  from the runtime, decides (:func:`kubelet.podstate.plan_pod`), acts, and writes ``status``
  through the status subresource when it changed.
* A relist of the runtime every second (PLEG) enqueues the pods whose containers changed state,
  so a dead container is noticed without runtime events, and removes containers whose pod is gone.
* A restarted kubelet finds its containers by their labels and adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apimachinery import errors, tracing
from apimachinery.client import Client
from apimachinery.defaults import qos_class
from apimachinery.events import EventRecorder
from apimachinery.informer import Informer
from apimachinery.quantity import parse_quantity
from apimachinery.resources import kind_info
from apimachinery.timefmt import rfc3339
from apimachinery.workqueue import WorkQueue, run_workers

from . import envvars, podstate, sa_token, trace, volumes
from .cni import CNIError, PodNetwork
from .metrics import KubeletMetrics
from .node import NODES, NodeAgent, every
from .probes import ProbeManager, run_probe
from .runtime import (
    NETWORK_NONE,
    STATE_EXITED,
    STATE_RUNNING,
    ContainerConfig,
    ContainerStatus,
    Mount,
    PodRef,
    PortMapping,
    Runtime,
    RuntimeError_,
    SandboxConfig,
    SandboxStatus,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]


PODS = kind_info("v1", "Pod")
CONFIGMAPS = kind_info("v1", "ConfigMap")
SECRETS = kind_info("v1", "Secret")
PVCS = kind_info("v1", "PersistentVolumeClaim")
PVS = kind_info("v1", "PersistentVolume")
SERVICES = kind_info("v1", "Service")

NETWORK_NOT_READY = "network plugin is not ready: cni config uninitialized"
RELIST_PERIOD = 1.0
# how often the pod network's allocations of gone sandboxes are released (a failed DEL, a sandbox
# removed behind the kubelet's back; at start as well) and its host iptables rules checked
NETWORK_GC_PERIOD = 60.0
RESYNC_PERIOD = 60.0
TERMINAL = ("Succeeded", "Failed")


@dataclass
class Prepared:
    """A container created for a start (``cid``), or why not (``delay``: retry after)."""

    cid: str | None
    container: Obj
    field: str
    delay: float | None


def pod_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def pod_ref(pod: Obj) -> PodRef:
    meta = pod.get("metadata") or {}
    return PodRef(str(meta.get("uid", "")), str(meta.get("name", "")), str(meta.get("namespace", "default")))


def pull_needed(policy: str, present: bool) -> bool:
    return policy == "Always" or (policy != "Never" and not present)


def cpu_to_nano(value: str) -> int:
    return int(parse_quantity(value) * 1_000_000_000)


MIN_GRACE_AFTER_HOOK = 2  # Kubernetes' minimumGracePeriodInSeconds


def pod_grace(spec: Obj) -> int:
    value = spec.get("terminationGracePeriodSeconds")
    return int(30 if value is None else value)


def container_spec(pod: Obj, name: str) -> Obj | None:
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if c.get("name") == name:
            return dict(c)
    return None


def container_field_path(pod: Obj, name: str) -> str:
    """``spec.containers{name}`` (or ``spec.initContainers{name}``): where events point."""
    spec = pod.get("spec") or {}
    if any(c.get("name") == name for c in spec.get("initContainers") or []):
        return f"spec.initContainers{{{name}}}"
    return f"spec.containers{{{name}}}"


def container_user(container: Obj, pod: Obj) -> str | None:
    sc = {
        **((pod.get("spec") or {}).get("securityContext") or {}),
        **(container.get("securityContext") or {}),
    }
    uid = sc.get("runAsUser")
    gid = sc.get("runAsGroup")
    if uid is None and gid is None:
        return None
    if uid is None:
        return None
    return f"{uid}:{gid}" if gid is not None else str(uid)


# Kubernetes' limits on a pod's resolv.conf (k8s.io/kubernetes/pkg/apis/core/validation)
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048
MAX_DNS_SEARCH_PATH_CHARS = 253  # a DNS-1123 subdomain; longer ones make glibc abort
DEFAULT_DNS_OPTIONS = ["ndots:5"]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value if v] if isinstance(value, list) else []


def _merge_dns_options(base: list[str], extra: Any) -> list[str]:
    """``base`` (``name`` or ``name:value`` strings) with the ``dnsConfig.options`` ``extra``;
    an option of ``extra`` replaces the one of the same name (Kubernetes' mergeDNSOptions)."""
    merged: dict[str, str] = {}
    for opt in base:
        name, _, value = opt.partition(":")
        merged[name] = value
    for opt in extra if isinstance(extra, list) else []:
        if isinstance(opt, dict) and opt.get("name"):
            given = opt.get("value")
            merged[str(opt["name"])] = "" if given is None else str(given)
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def _fit_searches(searches: list[str]) -> list[str]:
    """The search path within Kubernetes' limits (formDNSSearchFitsLimits): the first 32 domains,
    none longer than 253 characters, and the last ones dropped until the line is 2048 at most."""
    fitted = [s for s in searches[:MAX_DNS_SEARCH_PATHS] if len(s) <= MAX_DNS_SEARCH_PATH_CHARS]
    while len(" ".join(fitted)) > MAX_DNS_SEARCH_LIST_CHARS:
        fitted.pop()
    return fitted


def pod_dns(
    spec: Obj, namespace: str, cluster_dns: list[str], domain: str, host: str = ""
) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a pod's /etc/resolv.conf by Kubernetes' rules
    (the kubelet's GetPodDNS); ``host``: the node's resolv.conf.

    The base comes from ``dnsPolicy``: ``None`` starts empty; ``ClusterFirst`` (a ``hostNetwork``
    pod only with ``ClusterFirstWithHostNet``) takes the cluster DNS as its only nameservers, the
    search path ``<ns>.svc.<domain> svc.<domain> <domain>`` followed by the host's, and ``ndots:5``;
    ``Default``, ``ClusterFirst`` on a ``hostNetwork`` pod and ``ClusterFirst`` without a cluster
    DNS take the host's lists (its loopback nameservers left out: the pod's network namespace cannot
    reach them). ``dnsConfig`` is appended (nameservers, searches; duplicates dropped) and merged
    (options, its own replacing the base's of the same name), then the lists are cut to Kubernetes'
    limits: 3 nameservers, 32 search domains of 253 characters at most, 2048 characters in all."""
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    h_servers, h_searches, h_options = parse_resolv_conf(host)
    servers = [s for s in h_servers if not _is_local_nameserver(s)]
    searches = [s.removesuffix(".") for s in h_searches if s != "."]
    options = list(h_options)
    if policy == "None":
        servers, searches, options = [], [], []
    elif cluster_dns and policy != "Default" and (policy != "ClusterFirst" or not spec.get("hostNetwork")):
        servers = list(cluster_dns)
        if domain:
            searches = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *searches]
        options = list(DEFAULT_DNS_OPTIONS)
    cfg = spec.get("dnsConfig")
    cfg = cfg if isinstance(cfg, dict) else {}
    servers = _unique([*servers, *_strings(cfg.get("nameservers"))])
    searches = _unique([*searches, *_strings(cfg.get("searches"))])
    options = _merge_dns_options(options, cfg.get("options"))
    fitted = (servers[:MAX_DNS_NAMESERVERS], _fit_searches(searches), options)
    if fitted[0] != servers:
        log.warning(
            "pod in %s: nameserver limits were exceeded, some nameservers have been omitted,"
            " the applied nameserver line is: %s",
            namespace,
            " ".join(fitted[0]),
        )
    if fitted[1] != searches:
        log.warning(
            "pod in %s: search line limits were exceeded, some search paths have been omitted,"
            " the applied search line is: %s",
            namespace,
            " ".join(fitted[1]),
        )
    return fitted


HOST_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"  # the upstreams behind 127.0.0.53
DEFAULT_NAMESERVERS = ["8.8.8.8", "8.8.4.4"]  # Docker's, when the host has only local resolvers


def _is_local_nameserver(addr: str) -> bool:
    return addr.startswith("127.") or addr == "::1"


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf (the last ``search`` line wins)."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver":
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            options.extend(fields[1:])
    return servers, searches, options


def read_host_resolv_conf(path: str = HOST_RESOLV_CONF) -> str:
    """The host's resolv.conf; systemd-resolved's upstream list when it only names the local stub."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    servers = parse_resolv_conf(text)[0]
    if servers and all(_is_local_nameserver(s) for s in servers) and path == HOST_RESOLV_CONF:
        with contextlib.suppress(OSError), open(SYSTEMD_RESOLV_CONF) as f:
            return f.read()
    return text


def resolv_conf(servers: list[str], searches: list[str], options: list[str]) -> str:
    """A pod's ``/etc/resolv.conf`` from :func:`pod_dns`'s lists; without a nameserver (the host
    has only loopback ones) Docker's defaults are used, as Docker does."""
    lines = ["# Kubernetes-managed resolv.conf."]
    if searches:
        lines.append("search " + " ".join(searches))
    lines.extend(f"nameserver {s}" for s in servers or DEFAULT_NAMESERVERS)
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def host_ports(pod: Obj) -> list[PortMapping]:
    """The ``hostPort`` mappings of the pod's containers."""
    ports = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.append(
                    PortMapping(
                        int(p["containerPort"]),
                        int(p["hostPort"]),
                        str(p.get("protocol") or "TCP"),
                        str(p.get("hostIP") or ""),
                    )
                )
    return ports


def hosts_file(pod: Obj, pod_ip: str, domain: str) -> str:
    """The pod's ``/etc/hosts`` as Kubernetes' kubelet writes it (``managedHostsFileContent``):
    localhost entries, the pod's own address and name (with its FQDN when ``subdomain`` is set;
    "" until the IP is known) and ``hostAliases``."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    hostname = str(spec.get("hostname") or meta.get("name", ""))[:63]
    if pod_ip:
        sub = spec.get("subdomain")
        if sub:
            fqdn = f"{hostname}.{sub}.{meta.get('namespace', 'default')}.svc.{domain}"
            lines.append(f"{pod_ip}\t{fqdn}\t{hostname}")
        else:
            lines.append(f"{pod_ip}\t{hostname}")
    aliases = spec.get("hostAliases") or []
    if aliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        for a in aliases:
            names = [str(h) for h in a.get("hostnames") or []]
            if a.get("ip") and names:
                lines.append(f"{a['ip']}\t" + "\t".join(names))
    return "\n".join(lines) + "\n"


def port_mappings(pod: Obj) -> list[Obj]:
    """The pod's ``hostPort`` mappings as CNI's ``portMappings`` capability argument."""
    return [
        {
            "hostPort": pm.host_port,
            "containerPort": pm.container_port,
            "protocol": pm.protocol.lower(),
            **({"hostIP": pm.host_ip} if pm.host_ip else {}),
        }
        for pm in host_ports(pod)
    ]


# how long after a SIGKILL exit the kubelet keeps looking for Docker's (later) OOM record; a
# loaded machine can deliver it seconds after the exit
OOM_RECHECK_SECONDS = 15


class Kubelet:
    def __init__(
        self,
        client: Client,
        runtime: Runtime,
        node_name: str,
        node_ip: str,
        port: int,
        pod_cidr: str | None,
        network_name: str,
        root_dir: str,
        workers: int = 8,
        relist_period: float = RELIST_PERIOD,
        cluster_dns: list[str] | None = None,
        cluster_domain: str = "cluster.local",
        network: PodNetwork | None = None,
    ) -> None:
        self.client = client
        self.network = network  # CNI; None: the runtime's own network (--network-plugin docker)
        self.cluster_dns = list(cluster_dns or [])
        self.cluster_domain = cluster_domain
        self.runtime = runtime
        self.node_name = node_name
        self.node_ip = node_ip
        self.port = port
        self.pod_cidr = pod_cidr
        self.network_name = network_name
        self.root_dir = root_dir
        self.workers = workers
        self.relist_period = relist_period
        self.network_gc_period = NETWORK_GC_PERIOD
        self._network_busy: dict[str, int] = {}  # sandbox id -> its CNI ADDs/DELs under way
        self.node = NodeAgent(client, node_name, node_ip, port, pod_cidr, runtime, root_dir)
        self.volumes = volumes.VolumeManager(root_dir, runtime)
        self.pods = Informer(
            client, PODS, field_selector=f"spec.nodeName={node_name}", resync_period=RESYNC_PERIOD
        )
        self.queue = WorkQueue(name=f"kubelet-{node_name}")
        # Services for the containers' KUBERNETES_SERVICE_HOST-style variables; projected tokens
        self.services = Informer(client, SERVICES, resync_period=RESYNC_PERIOD)
        self.tokens = sa_token.TokenManager(client)
        self.backoff = podstate.Backoff()
        self.pull_backoff = podstate.Backoff()
        self.probes = ProbeManager(self._probe_exec, self.queue.add, self._probe_failed)
        self._waiting: dict[str, dict[str, tuple[str, str]]] = {}  # uid -> container -> (reason, msg)
        self._written: dict[str, Obj] = {}  # uid -> the status this kubelet last wrote
        self.metrics = KubeletMetrics(lambda: list(self._written.values()))  # kubelet_* metrics
        self._pleg_state: dict[str, tuple[str, str]] = {}  # container id -> (state, pod key)
        self._tasks: list[asyncio.Task[Any]] = []
        self._terminating: set[str] = set()
        self._pull_failed_at: dict[str, float] = {}
        self.start_backoff = podstate.Backoff()
        self._start_failed: dict[str, tuple[float, str, str]] = {}
        self.recorder = EventRecorder(
            client, "kubelet", node_name, max_hold=1.0
        )  # events may wait 1 s while pods start

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the node, prepare the pod network, start informers, workers and loops."""
        if self.network is not None and not self.pod_cidr:
            # NotReady only if the Node has no spec.podCIDR either (until node IPAM gives it one);
            # a restarted kubelet's Node has it and stays Ready
            self.node.network_error_without_pod_cidr = NETWORK_NOT_READY
        node = await self.node.register()
        cidr = (node.get("spec") or {}).get("podCIDR") or self.pod_cidr
        if self.network is None:
            self.pod_cidr = cidr
            await self.runtime.ensure_network(self.network_name, cidr or "")
        else:
            if not cidr:
                cidr = await self._wait_pod_cidr()
            self.pod_cidr = cidr
            self.network.configure(cidr)
            await self._collect_network_garbage()
            if self.node.network_error:
                self.node.network_error = ""
                await self.node.update_status(force=True)
        self.pods.add_event_handler(
            on_add=self._on_pod_add,
            on_update=self._on_pod_update,
            on_delete=self._on_pod_delete,
        )
        self._spawn(self.recorder.run(), "events")
        self._spawn(self.pods.run(), "pod-informer")
        self._spawn(self.services.run(), "service-informer")
        await self.pods.wait_for_sync()
        await self.services.wait_for_sync()
        self._spawn(self.node.lease_loop(), "lease")
        self._spawn(self.node.status_loop(), "node-status")
        self._spawn(self._pleg_loop(), "pleg")
        self._spawn(run_workers(self.queue, self.reconcile, self.workers), "pod-workers")
        if self.network is not None:
            self._spawn(self._network_loop(), "pod-network")
        log.info("kubelet for node %s started (pod network %s %s)", self.node_name, self.network_name, cidr)

    async def _wait_pod_cidr(self) -> str:
        """Poll the Node until the controller manager's node IPAM sets ``spec.podCIDR`` (the node
        is NotReady, reason NetworkPluginNotReady, meanwhile); its lease is renewed while waiting."""
        log.info("node %s: waiting for node.spec.podCIDR (%s)", self.node_name, NETWORK_NOT_READY)
        lease = asyncio.create_task(self.node.lease_loop(), name="lease-while-waiting")
        try:
            while True:
                await asyncio.sleep(0.25)  # a GET by name: cheap, and node Ready waits on it
                try:
                    node = await self.client.get(NODES, self.node_name)
                except Exception as exc:  # noqa: BLE001 - the API server may be restarting
                    log.warning("node %s: reading the node failed: %s", self.node_name, exc)
                    continue
                cidr = str((node.get("spec") or {}).get("podCIDR") or "")
                if cidr:
                    log.info("node %s: pod CIDR %s", self.node_name, cidr)
                    return cidr
        finally:
            lease.cancel()
            await asyncio.gather(lease, return_exceptions=True)

    async def _network_loop(self) -> None:
        await asyncio.sleep(self.network_gc_period)
        await every(self.network_gc_period, self._network_housekeeping, f"node {self.node_name}: %s")

    async def _network_housekeeping(self) -> None:
        """The pod network's host rules put back if they went missing, and its garbage collected."""
        assert self.network is not None
        try:
            await asyncio.to_thread(self.network.ensure_host_rules)
        except (CNIError, OSError) as exc:
            log.warning("node %s: restoring the pod network's iptables rules failed: %s", self.node_name, exc)
        try:
            await self._collect_network_garbage()
        except Exception as exc:  # noqa: BLE001 - the runtime may be restarting; next round
            log.warning("node %s: pod network garbage collection failed: %s", self.node_name, exc)

    async def _collect_network_garbage(self) -> None:
        """Release the pod-network attachments of sandboxes that are gone or not running (a
        kubelet killed between a sandbox's removal and its DEL, or while setting one up; a DEL
        that failed; a sandbox removed behind the kubelet's back).  Sandboxes whose network is
        being set up or torn down right now are left alone."""
        assert self.network is not None
        candidates = self.network.attached_sandboxes()  # before the listing: see garbage_collect
        live = {s.id: s.netns for s in await self.runtime.list_sandboxes() if s.state == STATE_RUNNING}
        live.update(dict.fromkeys(self._network_busy, ""))
        released = await self.network.garbage_collect(live, candidates)
        if released:
            log.info("node %s: released the pod network of %d gone sandboxes", self.node_name, len(released))

    def _with_ip(self, sandbox: SandboxStatus | None) -> SandboxStatus | None:
        """With CNI the runtime does not know the pod IP: it comes from the CNI result."""
        if sandbox is not None and self.network is not None and not sandbox.ip:
            sandbox.ip = self.network.ip_of(sandbox.id) if sandbox.state == STATE_RUNNING else ""
        return sandbox

    async def list_sandboxes(self, pod_uid: str | None = None) -> list[SandboxStatus]:
        """The runtime's sandboxes (of one pod) with their pod IPs."""
        return [s for s in await self.runtime.list_sandboxes(pod_uid) if self._with_ip(s)]

    async def _teardown_network(self, sandbox: SandboxStatus, pod: Obj | None = None) -> None:
        """CNI DEL of a sandbox's network, before the sandbox is stopped (its namespace still
        there, so the plugins can remove the interface and its masquerade rule).  The ``pod``'s
        hostPorts go to portmap's DEL when the ADD's result never reached the cache."""
        if self.network is None:
            return
        self._network_busy[sandbox.id] = self._network_busy.get(sandbox.id, 0) + 1
        try:
            mappings = port_mappings(pod) if pod is not None else None
            if await self.network.teardown(sandbox.id, sandbox.netns, mappings):
                log.info(
                    "pod %s/%s: released the network of sandbox %s",
                    sandbox.pod.namespace,
                    sandbox.pod.name,
                    sandbox.id[:12],
                )
        except (CNIError, OSError) as exc:
            log.warning(
                "releasing the network of sandbox %s failed (the network garbage collection retries): %s",
                sandbox.id[:12],
                exc,
            )
        finally:
            self._unbusy(sandbox.id)

    def _unbusy(self, sandbox_id: str) -> None:
        n = self._network_busy.pop(sandbox_id, 0) - 1
        if n > 0:
            self._network_busy[sandbox_id] = n

    async def _network_or_remove(self, pod: Obj, sandbox_id: str) -> SandboxStatus | None:
        """:meth:`_setup_network`; when it fails the sandbox is removed and the failure raised as
        the runtime error Kubernetes reports (FailedCreatePodSandBox)."""
        try:
            return (await self._setup_network(pod, sandbox_id))[0]
        except (CNIError, OSError) as exc:
            with contextlib.suppress(RuntimeError_):
                await self.runtime.stop_sandbox(sandbox_id)
                await self.runtime.remove_sandbox(sandbox_id)
            raise RuntimeError_(
                f'failed to set up sandbox container "{sandbox_id[:12]}" network for pod'
                f' "{pod_ref(pod).name}": networkPlugin cni failed to set up pod network: {exc}',
                "CreatePodSandboxError",
            ) from exc

    async def _setup_network(self, pod: Obj, sandbox_id: str) -> tuple[SandboxStatus | None, float]:
        """CNI ADD of a started sandbox: its status with the pod IP, and the seconds the ADD took."""
        assert self.network is not None
        sandbox = await self.runtime.inspect_sandbox(sandbox_id)
        if sandbox is None or sandbox.state != STATE_RUNNING or not sandbox.netns:
            return sandbox, 0.0
        ref = pod_ref(pod)
        self._network_busy[sandbox_id] = self._network_busy.get(sandbox_id, 0) + 1
        try:
            ip, took = await self.network.setup(
                sandbox_id, sandbox.netns, ref.namespace, ref.name, port_mappings(pod)
            )
        finally:
            self._unbusy(sandbox_id)
        sandbox.ip = ip
        await asyncio.to_thread(self._write_hosts, pod, ip)
        return sandbox, took

    def _hosts_path(self, uid: str) -> str:
        return str(self.volumes.pod_dir(uid) / "etc-hosts")

    def _write_hosts(self, pod: Obj, pod_ip: str) -> str:
        """Write the pod's hosts file (in place: containers bind-mount it): its path.  Without an
        IP an existing file is left as it is."""
        path = self._hosts_path(pod_ref(pod).uid)
        if pod_ip or not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(hosts_file(pod, pod_ip, self.cluster_domain))
        return path

    def _write_resolv(self, pod: Obj) -> str:
        """Write the pod's resolv.conf (from its ``dnsPolicy`` and ``dnsConfig``; in place, and
        only when it changes: containers bind-mount it): its path."""
        spec = pod.get("spec") or {}
        ns = (pod.get("metadata") or {}).get("namespace", "default")
        text = resolv_conf(*pod_dns(spec, ns, self.cluster_dns, self.cluster_domain, read_host_resolv_conf()))
        path = str(self.volumes.pod_dir(pod_ref(pod).uid) / "resolv.conf")
        with contextlib.suppress(OSError), open(path) as f:
            if f.read() == text:
                return path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _network_files(self, pod: Obj, pod_ip: str, mounts: list[Mount]) -> list[Mount]:
        """The mounts of the pod's ``/etc/hosts`` and ``/etc/resolv.conf`` (files written first)
        that a container does not mount itself."""
        targets = {m.target for m in mounts}
        out = []
        if "/etc/hosts" not in targets:
            out.append(Mount("/etc/hosts", self._write_hosts(pod, pod_ip)))
        if "/etc/resolv.conf" not in targets:
            out.append(Mount("/etc/resolv.conf", self._write_resolv(pod)))
        return out

    def _on_pod_add(self, pod: Obj) -> None:
        trace.seen(pod)  # minik trace: the wait from here to the pod's first sync
        self.queue.add(pod_key(pod))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        uid = pod_ref(new).uid
        if podstate.own_status_update(old, new, self._written.get(uid)):
            return
        self.queue.add(pod_key(new))

    def _on_pod_delete(self, pod: Obj) -> None:
        self._written.pop(pod_ref(pod).uid, None)
        self.metrics.forget(pod_ref(pod).uid)
        self.queue.add(pod_key(pod))

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        self.queue.shut_down()
        self.pods.stop()
        self.services.stop()
        await self.probes.stop()
        await self.recorder.flush()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # -- events --------------------------------------------------------------------------------

    def event(self, pod: Obj, etype: str, reason: str, message: str, field_path: str = "") -> None:
        """Record an Event about ``pod`` (written in the background, deduplicated by count)."""
        self.recorder.event(pod, etype, reason, message, field_path, rfc3339())

    def _probe_failed(self, key: str, container: str, kind: str, message: str) -> None:
        pod = self.pods.store.get(key)
        if pod is not None:
            self.event(
                pod,
                "Warning",
                "Unhealthy",
                f"{kind.capitalize()} probe failed: {message}",
                f"spec.containers{{{container}}}",
            )

    async def _probe_exec(self, cid: str, cmd: list[str], timeout: float) -> int:
        return (await self.runtime.exec_sync(cid, cmd, timeout)).exit_code

    # -- PLEG ----------------------------------------------------------------------------------

    async def _pleg_loop(self) -> None:
        await every(self.relist_period, self.relist, f"node {self.node_name}: runtime relist failed: %s")

    async def relist(self) -> None:
        """Diff the runtime against the last relist; enqueue changed pods; remove orphans."""
        rows = await self.runtime.relist()
        known_uids = {(p.get("metadata") or {}).get("uid") for p in self.pods.store.list()}
        current: dict[str, tuple[str, str]] = {}
        orphans: set[str] = set()
        for cid, state, pod in rows:
            key = f"{pod.namespace}/{pod.name}"
            current[cid] = (state, key)
            if pod.uid not in known_uids:
                orphans.add(pod.uid)
        for cid, (state, key) in current.items():
            if self._pleg_state.get(cid, ("", ""))[0] != state:
                self.queue.add(key)
        for cid, (_state, key) in self._pleg_state.items():
            if cid not in current:
                self.queue.add(key)
        self._pleg_state = current
        for uid in orphans:
            if uid and uid not in self._terminating:
                self._spawn_cleanup(uid)

    def _spawn_cleanup(self, uid: str) -> None:
        self._terminating.add(uid)

        async def run() -> None:
            try:
                await self.remove_pod_containers(uid, grace=0)
            except Exception as exc:  # noqa: BLE001
                log.warning("cleaning up containers of pod uid %s failed: %s", uid, exc)
            finally:
                self._terminating.discard(uid)

        task = asyncio.create_task(run(), name=f"cleanup-{uid}")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # -- reconcile -----------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        pod = self.pods.store.get(key)
        if pod is None:
            return  # the relist removes containers of pods that no longer exist
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self.terminate_pod(pod)
            return
        await self.sync_pod(pod)

    async def terminate_pod(self, pod: Obj) -> None:
        """Graceful deletion: stop containers with the pod's grace period, then delete the object."""
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        running = [c for c in await self.runtime.list_containers(uid) if c.state == STATE_RUNNING]
        self._terminating.add(uid)
        try:
            self.probes.remove_pod(uid)
            await asyncio.gather(
                *(
                    self.kill_container(pod, c, int(grace), f"Stopping container {c.name}")
                    for c in running
                    if not c.init
                ),
                *(self.runtime.stop_container(c.id, int(grace)) for c in running if c.init),
            )
            await self.remove_pod_containers(uid, grace=int(grace), pod=pod)
        finally:
            self._terminating.discard(uid)
        try:
            await self.client.delete(
                PODS, meta["name"], meta.get("namespace"), grace_period_seconds=0, preconditions={"uid": uid}
            )
            log.info("%s: pod deleted after its containers stopped", pod_key(pod))
        except errors.NotFound:
            pass
        except errors.Conflict:
            pass  # a new pod of the same name

    async def remove_pod_containers(self, uid: str, grace: int, pod: Obj | None = None) -> None:
        self.probes.remove_pod(uid)
        containers = await self.runtime.list_containers(uid)
        await asyncio.gather(
            *(self.runtime.stop_container(c.id, grace) for c in containers if c.state == STATE_RUNNING)
        )
        for c in containers:
            await self.runtime.remove_container(c.id)
        for s in await self.runtime.list_sandboxes(uid):
            await self._teardown_network(s, pod)
            await self.runtime.stop_sandbox(s.id)
            await self.runtime.remove_sandbox(s.id)
        await self.volumes.teardown(uid)
        self.tokens.forget_pod(uid)
        self.backoff.forget_prefix(f"{uid}/")
        self.start_backoff.forget_prefix(f"{uid}/")
        for k in [k for k in self._start_failed if k.startswith(f"{uid}/")]:
            del self._start_failed[k]
        self._waiting.pop(uid, None)
        self._written.pop(uid, None)

    async def sync_pod(self, pod: Obj) -> None:
        with contextlib.ExitStack() as stack:
            await self._sync_pod(pod, stack)

    async def _sync_pod(self, pod: Obj, stack: contextlib.ExitStack) -> None:
        t0 = time.perf_counter()
        wall0 = time.time_ns()  # minik trace's spans (kubelet/trace.py) are measured from here
        key = pod_key(pod)
        ref = pod_ref(pod)
        self.metrics.seen(ref.uid)
        spec = pod.get("spec") or {}
        old_status = pod.get("status") or {}
        sandboxes, containers = await self.runtime.list_pod(ref.uid)
        for s in sandboxes:
            self._with_ip(s)
        sandbox: SandboxStatus | None = podstate.latest_sandbox(sandboxes)
        waiting = self._waiting.setdefault(ref.uid, {})

        if old_status.get("phase") in TERMINAL:
            await self._stop_all(pod, containers, sandboxes)
            self._recheck_oom(key, containers)
            await self._write_status(pod, sandbox, containers, dict(waiting))
            return
        self._recheck_oom(key, containers)

        running = {c.name: c.id for c in containers if c.state == STATE_RUNNING}
        unhealthy = self.probes.unhealthy_names(ref.uid, running)
        plan = podstate.plan_pod(pod, sandboxes, containers, self.backoff, unhealthy=unhealthy)
        waiting.clear()
        waiting.update(plan.waiting)
        if plan.start or plan.create_sandbox:
            stack.enter_context(self.recorder.hold())  # events wait until the pod has started
        for cname, (reason, _message) in plan.waiting.items():
            if reason == "CrashLoopBackOff":
                self.event(
                    pod,
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container",
                    container_field_path(pod, cname),
                )

        for cid in plan.remove:
            await self.runtime.remove_container(cid)
        kills = []
        for cid in plan.kill:
            c = next((c for c in containers if c.id == cid), None)
            if c is None:
                continue
            kind = self.probes.unhealthy_kind.get((ref.uid, c.name), "liveness")
            msg = f"Container {c.name} failed {kind} probe, will be restarted"
            kills.append(self.kill_container(pod, c, pod_grace(spec), msg))
        if kills:
            await asyncio.gather(*kills)
            self.queue.add(key)

        if plan.terminal:
            if plan.kill_pod:
                await self._stop_all(pod, containers, sandboxes)
                containers = await self.runtime.list_containers(ref.uid)
                sandbox = podstate.latest_sandbox(await self.list_sandboxes(ref.uid))
            await self._write_status(pod, sandbox, containers, waiting)
            return

        phases = ""  # where the time went, for the log
        t_sandbox = t0
        started: list[str] = []  # containers created by this sync
        inspect_sandbox: asyncio.Future[SandboxStatus | None]
        early: dict[str, asyncio.Task[Prepared | None]] = {}
        mounts_task: asyncio.Task[dict[str, volumes.VolumeSource]] | None = None
        now = time.time()
        if plan.create_sandbox:
            if plan.kill_pod:
                await self._stop_all(pod, containers, sandboxes, remove_sandboxes=True)
            sandbox = None
            networked: SandboxStatus | None = None
            try:
                t_listed = time.perf_counter()
                sandbox_id = await self._create_sandbox(pod, plan.sandbox_attempt)
                t_created = time.perf_counter()
                # While the sandbox starts (most of a pod's start-up: Docker sets up its network),
                # set up the volumes and create the containers that start first: they only need
                # the sandbox's ID.  What needs the pod's IP waits for it (ordering, see below).
                if plan.start and not volumes.needs_pod_ip(pod):
                    mounts_task = asyncio.create_task(self._setup_volumes(pod, ""))
                    for start in self._early_starts(pod, plan, now):
                        early[start.name] = asyncio.create_task(
                            self._prepare_early(pod, sandbox_id, start, mounts_task, waiting, started)
                        )
                await self.runtime.start_sandbox(sandbox_id)
                t_started = time.perf_counter()
                if self.network is not None:  # the pod's IP: CNI ADD before any container starts
                    networked = await self._network_or_remove(pod, sandbox_id)
            except RuntimeError_ as exc:
                await self._abandon(early, mounts_task, started)
                self.event(pod, "Warning", "FailedCreatePodSandBox", str(exc))
                for c in spec.get("containers") or []:
                    waiting[c.get("name", "")] = ("ContainerCreating", str(exc))
                await self._write_status(pod, None, containers, waiting)
                self.queue.add_after(key, 5)
                return
            t_sandbox = time.perf_counter()
            if self.network is not None:
                inspect_sandbox = asyncio.get_running_loop().create_future()
                inspect_sandbox.set_result(networked)
            else:  # the pod's IP, read while the first containers start
                inspect_sandbox = asyncio.create_task(self.runtime.inspect_sandbox(sandbox_id))
            if tracing.active():
                trace.sandbox(pod, wall0, t0, t_listed, t_created, t_started, t_sandbox)
            phases = (
                f"sandbox create {(t_created - t_listed) * 1000:.0f} ms,"
                f" start {(t_started - t_created) * 1000:.0f} ms, "
            )
            if self.network is not None:
                phases += f"network {(t_sandbox - t_started) * 1000:.0f} ms, "
            log.info("%s: sandbox %s started", key, sandbox_id[:12])
        else:
            assert sandbox is not None
            sandbox_id = sandbox.id
            inspect_sandbox = asyncio.get_running_loop().create_future()
            inspect_sandbox.set_result(sandbox)

        if plan.start:
            try:
                if mounts_task is not None:
                    mounts_src = await mounts_task
                else:
                    pod_ip = sandbox.ip if sandbox is not None else ""
                    if not pod_ip and volumes.needs_pod_ip(pod):
                        sandbox = await inspect_sandbox
                        pod_ip = sandbox.ip if sandbox is not None else ""
                    mounts_src = await self._setup_volumes(pod, pod_ip)
            except volumes.MountError as exc:
                await self._abandon(early, None, [])
                sandbox = await inspect_sandbox
                self.event(pod, "Warning", "FailedMount", str(exc))
                for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
                    waiting.setdefault(c.get("name", ""), ("ContainerCreating", str(exc)))
                await self._write_status(pod, sandbox, containers, waiting)
                self.queue.add_after(key, 10)
                return
            for start in plan.start:
                fkey = f"{ref.uid}/{start.name}"
                failed = self._start_failed.get(fkey)
                if failed is not None:
                    left = self.start_backoff.remaining(fkey, failed[0], now)
                    if left > 0:
                        waiting[start.name] = (failed[1], failed[2])
                        self.queue.add_after(key, left + 0.1)
                        if start.init:
                            break
                        continue
                task = early.pop(start.name, None)
                prepared = await task if task is not None else None
                if prepared is None:
                    # not created yet: needs the pod's IP, or was held back
                    sandbox = await inspect_sandbox
                    prepared = await self._prepare_container(
                        pod, sandbox_id, sandbox.ip if sandbox else "", start, mounts_src, waiting, started
                    )
                if prepared.delay is None and prepared.cid:
                    prepared.delay = await self._run_container(pod, start, prepared, waiting)
                delay = prepared.delay
                if delay is not None:
                    reason, message = waiting.get(start.name, ("RunContainerError", ""))
                    if reason not in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"):
                        self.start_backoff.next(fkey, now)
                        self._start_failed[fkey] = (now, reason, message)
                        delay = self.start_backoff.get(fkey)
                    self.queue.add_after(key, delay)
                else:
                    self._start_failed.pop(fkey, None)
                    self.start_backoff.forget(fkey)
            # created early but not started (an init container held back): removed by the next sync
            await self._abandon(early, None, [])
            if plan.kill or plan.kill_pod or plan.remove or any(s.restart_count > 1 for s in plan.start):
                containers, sandbox = await asyncio.gather(
                    self.runtime.list_containers(ref.uid), inspect_sandbox
                )
            else:  # only new containers: inspect them instead of listing the pod again
                found, sandbox = await asyncio.gather(
                    asyncio.gather(*(self.runtime.inspect_container(i) for i in started)), inspect_sandbox
                )
                containers = containers + [c for c in found if c is not None]
        else:
            sandbox = await inspect_sandbox
            if (spec.get("volumes") or []) and sandbox is not None:
                try:  # keep configMap/secret files in step with their objects
                    await self._setup_volumes(pod, sandbox.ip)
                except volumes.MountError as exc:
                    log.warning("%s: refreshing volumes failed: %s", key, exc)
        if plan.create_sandbox:
            log.info("%s: sandbox %s has IP %s", key, sandbox_id[:12], sandbox.ip if sandbox else "(gone)")
            if sandbox is None or sandbox.state != STATE_RUNNING:
                self.queue.add(key)  # died at once: the next sync replaces it

        if plan.requeue_after:
            self.queue.add_after(key, plan.requeue_after + 0.1)
        running = {c.name: c.id for c in containers if c.state == STATE_RUNNING}
        self.probes.sync(key, ref.uid, spec.get("containers") or [], running, sandbox.ip if sandbox else "")
        t1 = time.perf_counter()
        await self._write_status(pod, sandbox, containers, waiting)
        if tracing.active() and trace.not_ready(old_status):
            ready = all(self.probes.readiness(ref.uid, c) for c in spec.get("containers") or [])
            phase = str((self._written.get(ref.uid) or {}).get("phase") or "")
            trace.status(pod, wall0, t0, t1, time.perf_counter(), ready, phase)
        if plan.start or plan.create_sandbox:
            # what this sync started and saw running is no news to the next relist (anything
            # else, such as a container that already exited, is: the relist syncs the pod again)
            for c in containers:
                if c.state == STATE_RUNNING:
                    self._pleg_state[c.id] = (c.state, key)
            if sandbox is not None and sandbox.state == STATE_RUNNING:
                self._pleg_state[sandbox.id] = (sandbox.state, key)
        if plan.start:
            log.info(
                "%s: synced in %.0f ms (%scontainers %.0f ms, status %.0f ms)",
                key,
                (time.perf_counter() - t0) * 1000,
                phases,
                (t1 - t_sandbox) * 1000,
                (time.perf_counter() - t1) * 1000,
            )

    def _recheck_oom(self, key: str, containers: list[ContainerStatus]) -> None:
        """Docker records an OOM kill from a separate event that can land just after the exit:
        a container killed by SIGKILL moments ago is looked at again, so OOMKilled is reported."""
        now = time.time()
        for c in containers:
            if (
                c.state == STATE_EXITED
                and c.exit_code == 137
                and not c.oom_killed
                and c.finished_at is not None
                and now - c.finished_at < OOM_RECHECK_SECONDS
            ):
                self.queue.add_after(key, 0.5 if now - c.finished_at < 3 else 1.0)
                return

    async def _stop_all(
        self,
        pod: Obj,
        containers: list[ContainerStatus],
        sandboxes: list[SandboxStatus],
        remove_sandboxes: bool = False,
    ) -> None:
        grace = pod_grace(pod.get("spec") or {})
        await asyncio.gather(
            *(self.kill_container(pod, c, grace, None) for c in containers if c.state == STATE_RUNNING)
        )
        for s in sandboxes:
            await self._teardown_network(s, pod)
            if s.state == STATE_RUNNING:
                await self.runtime.stop_sandbox(s.id)
            if remove_sandboxes:
                await self.runtime.remove_sandbox(s.id)

    # -- lifecycle hooks and killing --------------------------------------------------------------

    async def run_hook(
        self, pod: Obj, container: Obj, cid: str, handler: Obj, timeout: float
    ) -> tuple[bool, str]:
        """Run a ``lifecycle`` handler (exec, httpGet, tcpSocket or sleep): ``(ok, message)``."""
        if handler.get("sleep"):
            await asyncio.sleep(min(float(handler["sleep"].get("seconds") or 0), max(0.0, timeout)))
            return True, ""
        pod_ip = str((pod.get("status") or {}).get("podIP") or "")
        if not pod_ip and (handler.get("httpGet") or handler.get("tcpSocket")):
            sandbox = self._with_ip(
                podstate.latest_sandbox(await self.runtime.list_sandboxes(pod_ref(pod).uid))
            )
            pod_ip = sandbox.ip if sandbox else ""

        async def exec_in(cmd: list[str], t: float) -> int:
            result = await self.runtime.exec_sync(cid, cmd, t)
            exec_output[0] = result.output.decode(errors="replace").strip()
            return result.exit_code

        exec_output = [""]
        ok, message = await run_probe(handler, container, pod_ip, timeout, exec_in)
        if not ok and exec_output[0]:
            message = f"{message}: {exec_output[0]}"
        return ok, message

    async def kill_container(self, pod: Obj, c: ContainerStatus, grace: int, message: str | None) -> None:
        """Stop one container as Kubernetes' ``killContainer``: Killing event, preStop hook within
        the grace period, then the stop signal and, after what is left of the grace period, SIGKILL."""
        spec = container_spec(pod, c.name)
        field = container_field_path(pod, c.name)
        if message:
            self.event(pod, "Normal", "Killing", message, field)
        pre_stop = ((spec or {}).get("lifecycle") or {}).get("preStop")
        if pre_stop and spec is not None and grace > 0 and c.state == STATE_RUNNING:
            t0 = time.monotonic()
            try:
                ok, msg = await asyncio.wait_for(self.run_hook(pod, spec, c.id, pre_stop, grace), grace)
            except TimeoutError:
                ok, msg = False, f"timed out after {grace}s"
            except RuntimeError_ as exc:
                ok, msg = False, str(exc)
            if not ok:
                self.event(pod, "Warning", "FailedPreStopHook", f"PreStopHook failed: {msg}", field)
            grace = max(MIN_GRACE_AFTER_HOOK, int(grace - (time.monotonic() - t0)))
        await self.runtime.stop_container(c.id, grace)

    async def _post_start(self, pod: Obj, container: Obj, cid: str, field: str) -> bool:
        """Run ``lifecycle.postStart``; on failure the container is killed (then restarted per the
        restart policy) and False is returned."""
        hook = (container.get("lifecycle") or {}).get("postStart")
        if not hook:
            return True
        grace = pod_grace(pod.get("spec") or {})
        try:
            ok, msg = await asyncio.wait_for(self.run_hook(pod, container, cid, hook, 30), 60)
        except TimeoutError:
            ok, msg = False, "timed out"
        except RuntimeError_ as exc:
            ok, msg = False, str(exc)
        if ok:
            return True
        name = container.get("name", "")
        self.event(pod, "Warning", "FailedPostStartHook", f"PostStartHook failed: {msg}", field)
        c = await self.runtime.inspect_container(cid)
        if c is not None:
            await self.kill_container(pod, c, grace, "FailedPostStartHook")
        log.info("%s: postStart hook of %s failed: %s", pod_key(pod), name, msg)
        return False

    async def _create_sandbox(self, pod: Obj, attempt: int) -> str:
        """Create (not start) the pod's sandbox: its ID."""
        spec = pod.get("spec") or {}
        meta = pod.get("metadata") or {}
        ports = host_ports(pod)
        hostname = str(spec.get("hostname") or meta.get("name", ""))
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
        if self.network is None:  # Docker's network: Docker writes resolv.conf from these lists
            host = await asyncio.to_thread(read_host_resolv_conf)
            servers, searches, options = pod_dns(
                spec, meta.get("namespace", "default"), self.cluster_dns, self.cluster_domain, host
            )
        config = SandboxConfig(
            pod_ref(pod),
            attempt,
            hostname,
            NETWORK_NONE if self.network is not None else self.network_name,
            ports,
            dns_servers=servers,
            dns_search=searches,
            dns_options=options,
        )
        return await self.runtime.create_sandbox(config)

    async def _fetch(self, info: Any, namespace: str, names: set[str]) -> dict[str, Obj | None]:
        out: dict[str, Obj | None] = {}
        for name in names:
            try:
                out[name] = await self.client.get(info, name, namespace)
            except errors.NotFound:
                out[name] = None
        return out

    async def _sources(self, pod: Obj, names: tuple[set[str], set[str]], pod_ip: str) -> envvars.PodSources:
        """The ConfigMaps and Secrets ``names`` of the pod's namespace, the pod's IP and the node's."""
        ns = pod_ref(pod).namespace
        store = self.services.store
        return envvars.PodSources(
            await self._fetch(CONFIGMAPS, ns, names[0]),
            await self._fetch(SECRETS, ns, names[1]),
            pod_ip,
            self.node_ip,
            self.node.allocatable,
            services=[
                *store.by_index("namespace", ns),
                *([] if ns == "default" else store.by_index("namespace", "default")),
            ],
        )

    async def _setup_volumes(self, pod: Obj, pod_ip: str) -> dict[str, volumes.VolumeSource]:
        sources = await self._sources(pod, volumes.referenced_objects(pod), pod_ip)
        sources.tokens = await self._tokens(pod)
        return await self.volumes.setup(pod, sources, await self._pvc_paths(pod))

    async def _tokens(self, pod: Obj) -> dict[str, str]:
        """Tokens for the pod's projected serviceAccountToken sources (TokenRequests bound to the
        pod); the pod is synced again when one is due for refresh, which rewrites its file."""
        out: dict[str, str] = {}
        for volume, source in sa_token.token_sources(pod):
            try:
                out[sa_token.source_id(source)] = await self.tokens.get(pod, source)
            except sa_token.TokenError as exc:
                # Kubernetes' wording, as for the other volume failures
                raise volumes.MountError(f'MountVolume.SetUp failed for volume "{volume}" : {exc}') from exc
        due = self.tokens.next_refresh(pod_ref(pod).uid)
        if due is not None:
            self.queue.add_after(pod_key(pod), max(1.0, due - time.time()) + 0.1)
        return out

    async def _pvc_paths(self, pod: Obj) -> dict[str, str]:
        ns = (pod.get("metadata") or {}).get("namespace", "default")
        out: dict[str, str] = {}
        for v in (pod.get("spec") or {}).get("volumes") or []:
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            try:
                pvc = await self.client.get(PVCS, claim, ns)
                pv_name = (pvc.get("spec") or {}).get("volumeName")
                if not pv_name:
                    continue
                pv = await self.client.get(PVS, pv_name)
            except errors.NotFound:
                continue
            pv_spec = pv.get("spec") or {}
            path = (pv_spec.get("hostPath") or {}).get("path") or (pv_spec.get("local") or {}).get("path")
            if path:
                out[claim] = str(path)
            else:
                out[claim] = f"volume:minik-pv-{pv_name}"
        return out

    async def _ensure_image(self, pod: Obj, container: Obj) -> tuple[str, str] | None:
        """Pull per the pull policy; ``(reason, message)`` when the image is not usable."""
        image = str(container.get("image", ""))
        name = container.get("name", "")
        policy = str(
            container.get("imagePullPolicy")
            or (
                "Always"
                if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
                else "IfNotPresent"
            )
        )
        present = await self.runtime.image_id(image) is not None
        field = f"spec.containers{{{name}}}"
        if policy == "Never" and not present:
            msg = f'Container image "{image}" is not present with pull policy of Never'
            self.event(pod, "Warning", "ErrImageNeverPull", msg, field)
            return "ErrImageNeverPull", msg
        if not pull_needed(policy, present):
            self.event(
                pod, "Normal", "Pulled", f'Container image "{image}" already present on machine', field
            )
            return None
        bkey = f"{(pod.get('metadata') or {}).get('uid')}/{image}"
        now = time.time()
        failed_at = self._pull_failed_at.get(bkey)
        if failed_at is not None and self.pull_backoff.remaining(bkey, failed_at, now) > 0:
            msg = f'Back-off pulling image "{image}"'
            self.event(pod, "Normal", "BackOff", msg, field)
            return "ImagePullBackOff", msg
        self.event(pod, "Normal", "Pulling", f'Pulling image "{image}"', field)
        try:
            await self.runtime.pull_image(image)
        except RuntimeError_ as exc:
            self.pull_backoff.next(bkey, now)
            self._pull_failed_at[bkey] = now
            self.event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {exc}', field)
            self.event(pod, "Warning", "Failed", "Error: ErrImagePull", field)
            return "ErrImagePull", str(exc)
        self.pull_backoff.forget(bkey)
        self._pull_failed_at.pop(bkey, None)
        self.event(pod, "Normal", "Pulled", f'Successfully pulled image "{image}"', field)
        return None

    def _early_starts(self, pod: Obj, plan: podstate.Plan, now: float) -> list[podstate.Start]:
        """The containers of ``plan`` that can be created while a new sandbox starts: what this
        sync starts first (the first init container, or the app containers), unless held back by a
        start back-off or needing the pod's IP in their environment."""
        spec = pod.get("spec") or {}
        uid = pod_ref(pod).uid
        out: list[podstate.Start] = []
        for start in plan.start:
            if out and start.init:
                break
            specs = spec.get("initContainers") if start.init else spec.get("containers")
            container = next((c for c in specs or [] if c.get("name") == start.name), None)
            fkey = f"{uid}/{start.name}"
            failed = self._start_failed.get(fkey)
            held = failed is not None and self.start_backoff.remaining(fkey, failed[0], now) > 0
            if container is not None and not held and not envvars.needs_pod_ip(container):
                out.append(start)
            if start.init:
                break
        return out

    async def _prepare_early(
        self,
        pod: Obj,
        sandbox_id: str,
        start: podstate.Start,
        mounts: asyncio.Task[dict[str, volumes.VolumeSource]],
        waiting: dict[str, tuple[str, str]],
        created: list[str],
    ) -> Prepared | None:
        """:meth:`_prepare_container` once the volumes are set up; None if they could not be (the
        sync reports that)."""
        try:
            sources = await asyncio.shield(mounts)
        except volumes.MountError:
            return None
        return await self._prepare_container(pod, sandbox_id, "", start, sources, waiting, created)

    async def _abandon(
        self,
        early: dict[str, asyncio.Task[Prepared | None]],
        mounts: asyncio.Task[Any] | None,
        remove: list[str],
    ) -> None:
        """Wait for early preparations that will not be used, then remove the containers in
        ``remove`` (created for a sandbox that failed to start)."""
        tasks: list[asyncio.Task[Any]] = [*early.values(), *([mounts] if mounts is not None else [])]
        early.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        for cid in remove:
            try:
                await self.runtime.remove_container(cid)
            except RuntimeError_ as exc:
                log.warning("removing container %s failed: %s", cid[:12], exc)

    async def _prepare_container(
        self,
        pod: Obj,
        sandbox_id: str,
        pod_ip: str,
        start: podstate.Start,
        sources: Mapping[str, volumes.VolumeSource],
        waiting: dict[str, tuple[str, str]],
        created: list[str],
    ) -> Prepared:
        """Pull per the policy, build the config and create one container (its ID appended to
        ``created``); on failure record a waiting reason and return a retry delay."""
        spec = pod.get("spec") or {}
        specs = spec.get("initContainers") if start.init else spec.get("containers")
        container = next((c for c in specs or [] if c.get("name") == start.name), None)
        if container is None:
            return Prepared(None, {}, "", None)
        field = f"spec.{'initContainers' if start.init else 'containers'}{{{start.name}}}"
        with trace.step("image", pod, start.name):
            bad = await self._ensure_image(pod, container)
        if bad is not None:
            waiting[start.name] = bad
            if bad[0] != "ImagePullBackOff":
                return Prepared(None, container, field, 1.0 if bad[0] == "ErrImagePull" else 10.0)
            return Prepared(
                None,
                container,
                field,
                max(1.0, self.pull_backoff.get(f"{pod_ref(pod).uid}/{container.get('image')}")),
            )
        try:
            inputs = await self._sources(pod, envvars.referenced_objects(container), pod_ip)
            env = envvars.make_environment(pod, container, inputs)
            command, args = envvars.expand_command(container, env)
            mounts = self.volumes.mounts_for(container, sources)
            if self.network is not None:
                # under network "none" the runtime writes no hosts file nor resolv.conf: the
                # kubelet manages both, as Kubernetes' does (the IP is filled in after the ADD)
                mounts = [*mounts, *await asyncio.to_thread(self._network_files, pod, pod_ip, mounts)]
        except (envvars.ConfigError, volumes.MountError) as exc:
            waiting[start.name] = ("CreateContainerConfigError", str(exc))
            self.event(pod, "Warning", "Failed", f"Error: {exc}", field)
            return Prepared(None, container, field, 10.0)
        limits = (container.get("resources") or {}).get("limits") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        sc = container.get("securityContext") or {}
        config = ContainerConfig(
            pod=pod_ref(pod),
            name=start.name,
            image=str(container.get("image", "")),
            restart_count=start.restart_count,
            init=start.init,
            command=command,
            args=args,
            working_dir=container.get("workingDir"),
            env=env,
            mounts=mounts,
            memory_limit=int(parse_quantity(str(limits["memory"]))) if limits.get("memory") else None,
            nano_cpus=cpu_to_nano(str(limits["cpu"])) if limits.get("cpu") else None,
            cpu_shares=max(2, int(parse_quantity(str(requests["cpu"])) * 1024))
            if requests.get("cpu")
            else None,
            user=container_user(container, pod),
            privileged=bool(sc.get("privileged")),
            read_only_rootfs=bool(sc.get("readOnlyRootFilesystem")),
            stdin=bool(container.get("stdin")),
            stdin_once=bool(container.get("stdinOnce")),
            tty=bool(container.get("tty")),
        )
        try:
            with trace.step("create container", pod, start.name):
                cid = await self.runtime.create_container(sandbox_id, config)
        except RuntimeError_ as exc:
            return Prepared(None, container, field, self._start_error(pod, start, field, exc, waiting))
        created.append(cid)
        self.event(pod, "Normal", "Created", f"Created container {start.name}", field)
        return Prepared(cid, container, field, None)

    def _start_error(
        self,
        pod: Obj,
        start: podstate.Start,
        field: str,
        exc: RuntimeError_,
        waiting: dict[str, tuple[str, str]],
    ) -> float:
        reason = (
            exc.reason if exc.reason in ("CreateContainerError", "RunContainerError") else "RunContainerError"
        )
        waiting[start.name] = (reason, str(exc))
        self.event(pod, "Warning", "Failed", f"Error: {exc}", field)
        return 10.0

    async def _run_container(
        self, pod: Obj, start: podstate.Start, prepared: Prepared, waiting: dict[str, tuple[str, str]]
    ) -> float | None:
        """Start a created container and run its postStart hook; a retry delay on failure."""
        key = pod_key(pod)
        cid = prepared.cid
        assert cid is not None
        try:
            with trace.step("start container", pod, start.name):
                await self.runtime.start_container(cid)
            self.event(pod, "Normal", "Started", f"Started container {start.name}", prepared.field)
            if not await self._post_start(pod, prepared.container, cid, prepared.field):
                self.queue.add(key)  # the killed container restarts per the restart policy
                return None
        except RuntimeError_ as exc:
            return self._start_error(pod, start, prepared.field, exc, waiting)
        log.info("%s: started container %s (%s, restart %d)", key, start.name, cid[:12], start.restart_count)
        if start.restart_count >= 2:  # older instances than the previous one exist
            await self._gc_instances(pod_ref(pod).uid, start.name, keep=2)
        return None

    async def _gc_instances(self, uid: str, name: str, keep: int) -> None:
        """Keep the newest ``keep`` instances of a container (the running one and the previous)."""
        lst = podstate.instances([c for c in await self.runtime.list_containers(uid) if c.name == name]).get(
            name, []
        )
        for old in lst[keep:]:
            if old.state == STATE_EXITED:
                await self.runtime.remove_container(old.id)

    async def _write_status(
        self,
        pod: Obj,
        sandbox: SandboxStatus | None,
        containers: list[ContainerStatus],
        waiting: dict[str, tuple[str, str]],
    ) -> None:
        uid = pod_ref(pod).uid
        spec = pod.get("spec") or {}
        ready = {c.get("name", ""): self.probes.readiness(uid, c) for c in spec.get("containers") or []}
        started = {c.get("name", ""): self.probes.is_started(uid, c) for c in spec.get("containers") or []}
        status = podstate.pod_status(
            pod, sandbox, containers, waiting, ready, started, self.node_ip, qos_class(spec)
        )
        if podstate.status_equal(status, pod.get("status") or {}):
            return
        new = {**pod, "status": status}
        # set before the write: the watch may deliver the update before the response arrives
        self._written[uid] = status
        try:
            written = await self.client.update_status(PODS, new)
            self._written[uid] = dict(written.get("status") or status)
            self.metrics.status_written(uid, pod.get("status") or {}, status)
        except errors.Conflict:
            self._written.pop(uid, None)
            self.queue.add(pod_key(pod))  # the cache will catch up; sync again
        except errors.NotFound:
            self._written.pop(uid, None)
