"""A small libcni: the kubelet's side of the Container Network Interface (CNI spec 1.0).

The kubelet gives every pod sandbox a network by executing CNI plugins, as Kubernetes' kubelet
does through its container runtime:

* a *network configuration list* (``.conflist``) is read from the configuration directory
  (``--cni-conf-dir``): the file of the wanted network name, else the lexically first file;
* ``ADD`` executes each plugin of the list in order, handing each the previous one's result
  (``prevResult``); ``DEL`` runs them in reverse order with the cached result; ``CHECK`` in order;
* a plugin is found on the search path (``--cni-bin-dir``), gets ``CNI_COMMAND``,
  ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_ARGS`` and ``CNI_PATH`` in its
  environment and its configuration (``name``, ``cniVersion``, ``runtimeConfig`` for the
  capabilities it declares, ``prevResult``) on stdin;
* results are cached as libcni caches them (``<cache-dir>/results/<net>-<id>-<ifname>``), so DEL
  has the ``prevResult`` and a restarted kubelet knows a sandbox's IP.

:class:`PodNetwork` is what the kubelet uses: the generated conflist for the node's pod CIDR
(bridge + host-local, portmap, firewall), ADD/DEL of a sandbox's ``eth0`` and ``lo``, the pod IP of
a sandbox, and a garbage collection of allocations whose sandbox is gone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apimachinery.bridgenf import ensure_bridge_netfilter

log = logging.getLogger(__name__)

Obj = dict[str, Any]

CNI_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_BIN_DIRS = "/usr/lib/cni:/opt/cni/bin"
DEFAULT_CACHE_DIR = "/var/lib/cni"
DEFAULT_NETWORK_NAME = "minik-pods"
DEFAULT_BRIDGE = "minik0"
PLUGIN_TIMEOUT = 30.0
LOOPBACK_CONF: Obj = {"cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback"}
_CONF_SUFFIXES = (".conflist", ".conf", ".json")


class CNIError(Exception):
    """A plugin failed: the CNI error object (``code``, ``msg``, ``details``) and which plugin."""

    def __init__(self, msg: str, code: int = 999, details: str = "", plugin: str = "") -> None:
        self.code = code
        self.msg = msg
        self.details = details
        self.plugin = plugin
        where = f"plugin type={plugin!r} " if plugin else ""
        text = f"{where}failed (code {code}): {msg}"
        if details:
            text += f": {details}"
        super().__init__(text)


def bridge_name(network_name: str) -> str:
    """The default bridge device of a network: ``minik0`` for ``minik-pods``, else ``mk`` + 8 hex."""
    if network_name == DEFAULT_NETWORK_NAME:
        return DEFAULT_BRIDGE
    return "mk" + hashlib.sha1(network_name.encode()).hexdigest()[:8]


# -- configuration ---------------------------------------------------------------------------------


@dataclass
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: list[Obj]
    raw: bytes = b""
    path: str = ""


def parse_conflist(data: bytes, path: str = "") -> NetworkConfigList:
    """A ``.conflist`` (or a single-plugin ``.conf``, wrapped in a list of one) from its bytes."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise CNIError(f"invalid network configuration {path or ''}: {exc}", 6) from exc
    if not isinstance(obj, dict):
        raise CNIError(f"invalid network configuration {path}: not a JSON object", 6)
    if "plugins" not in obj and "type" in obj:  # a .conf: one plugin
        obj = {"cniVersion": obj.get("cniVersion", ""), "name": obj.get("name", ""), "plugins": [obj]}
    name = obj.get("name")
    plugins = obj.get("plugins")
    if not isinstance(name, str) or not name:
        raise CNIError(f"invalid network configuration {path}: no name", 6)
    if not isinstance(plugins, list) or not plugins:
        raise CNIError(f"invalid network configuration {path}: no plugins", 6)
    for p in plugins:
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise CNIError(f"invalid network configuration {path}: a plugin without a type", 6)
    version = str(obj.get("cniVersion") or "")
    if version and version not in SUPPORTED_VERSIONS:
        raise CNIError(f"network {name}: unsupported cniVersion {version!r}", 1)
    return NetworkConfigList(name, version or CNI_VERSION, [dict(p) for p in plugins], bytes(data), path)


def load_conflist(conf_dir: str, name: str | None = None) -> NetworkConfigList:
    """The network ``name`` from ``conf_dir`` (or, without a name, the lexically first usable
    file), as libcni's ``LoadConfList`` / the kubelet's choice of the default network."""
    try:
        files = sorted(f for f in os.listdir(conf_dir) if f.endswith(_CONF_SUFFIXES))
    except FileNotFoundError:
        files = []
    errors: list[str] = []
    for f in files:
        path = os.path.join(conf_dir, f)
        try:
            with open(path, "rb") as fh:
                conf = parse_conflist(fh.read(), path)
        except (OSError, CNIError) as exc:
            errors.append(str(exc))
            continue
        if name is None or conf.name == name:
            return conf
    what = f"network {name!r}" if name else "a network"
    raise CNIError(
        f"no configuration for {what} in {conf_dir}" + (f" ({'; '.join(errors)})" if errors else ""), 6
    )


def generate_conflist(
    network_name: str, bridge: str, pod_cidr: str, cache_dir: str, mtu: int | None = None
) -> Obj:
    """The kubelet's own conflist for the node's pod CIDR: a bridge with host-local IPAM (gateway
    the first host address, hairpin for Services that lead back to the pod) and portmap for
    ``hostPort``.  Masquerading and the FORWARD accept rules are per network, not per pod
    (:func:`ensure_host_rules`): the bridge plugin's ``ipMasq`` and the firewall plugin would add
    several iptables calls to every pod start.  ``mtu``: the bridge's and the pods' veth MTU (an
    overlay's encapsulation leaves less than the host's; kubelet/overlay.py)."""
    net = ipaddress.ip_network(pod_cidr, strict=False)
    gateway = str(next(net.hosts()))
    bridge_conf: Obj = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": str(net), "gateway": gateway}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": os.path.join(cache_dir, "networks"),
        },
    }
    if mtu:
        bridge_conf["mtu"] = mtu
    return {
        "cniVersion": CNI_VERSION,
        "name": network_name,
        "plugins": [
            bridge_conf,
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def rule_comment(network_name: str) -> str:
    return f"minik pod network {network_name}"


def host_rules(
    network_name: str, bridge: str, pod_cidr: str, cluster_cidr: str = ""
) -> list[tuple[str, str, list[str]]]:
    """``(table, chain, rule)`` of a network: accept forwarding from and to the bridge (Docker's
    FORWARD policy is DROP; appended, so DOCKER-USER sees the traffic first) and masquerade what
    leaves the pod CIDR (what the bridge plugin's ``ipMasq`` does per pod) -- or, given the
    ``cluster_cidr`` of all nodes' pods (an overlay between nodes), what leaves the cluster CIDR,
    so that pods of other nodes see the pod's own address."""
    comment = ["-m", "comment", "--comment", rule_comment(network_name)]
    net = str(ipaddress.ip_network(pod_cidr, strict=False))
    dst = str(ipaddress.ip_network(cluster_cidr, strict=False)) if cluster_cidr else net
    return [
        ("filter", "FORWARD", ["-i", bridge, *comment, "-j", "ACCEPT"]),
        ("filter", "FORWARD", ["-o", bridge, *comment, "-j", "ACCEPT"]),
        ("nat", "POSTROUTING", ["-s", net, "!", "-d", dst, *comment, "-j", "MASQUERADE"]),
    ]


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)


def _remove_commented_rules(network_name: str, keep: list[tuple[str, str, list[str]]]) -> None:
    """Delete the rules carrying the network's comment but ``keep``."""
    for table in ("filter", "nat"):
        dump = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
        for line in dump.splitlines():
            if not line.startswith("-A ") or f'"{rule_comment(network_name)}"' not in line:
                continue
            words = shlex.split(line)
            chain, rule = words[1], words[2:]
            if any(t == table and c == chain and _same_rule(rule, r) for t, c, r in keep):
                continue
            _iptables("-t", table, "-D", chain, *rule)


def _same_rule(saved: list[str], rule: list[str]) -> bool:
    """iptables-save's spelling of ``rule`` (it writes ``! -d`` and ``/32``-less prefixes alike)."""
    return sorted(saved) == sorted(rule)


def ensure_host_rules(network_name: str, bridge: str, pod_cidr: str, cluster_cidr: str = "") -> None:
    """Install the network's rules (:func:`host_rules`) once, dropping stale ones (another CIDR)."""
    rules = host_rules(network_name, bridge, pod_cidr, cluster_cidr)
    for table, chain, rule in rules:
        if _iptables("-t", table, "-C", chain, *rule).returncode != 0:
            done = _iptables("-t", table, "-A", chain, *rule)
            if done.returncode != 0:
                raise CNIError(f"iptables -t {table} -A {chain} failed: {done.stderr.strip()}", 999)
    _remove_commented_rules(network_name, rules)


def write_conflist(conf_dir: str, conf: Obj) -> str:
    """Write ``<conf_dir>/10-<name>.conflist`` (atomically, only when it changed): its path."""
    os.makedirs(conf_dir, exist_ok=True)
    path = os.path.join(conf_dir, f"10-{conf['name']}.conflist")
    data = (json.dumps(conf, indent=2) + "\n").encode()
    with contextlib.suppress(OSError), open(path, "rb") as f:
        if f.read() == data:
            return path
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


# -- execution ---------------------------------------------------------------------------------


@dataclass
class RuntimeConf:
    """What libcni calls ``RuntimeConf``: the attachment's identity and its capability arguments."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: Obj = field(default_factory=dict)


def build_env(
    command: str, rt: RuntimeConf, cni_path: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The plugin's environment: ``base`` (the kubelet's own by default) plus the ``CNI_*`` variables."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": rt.container_id,
            "CNI_NETNS": rt.netns,
            "CNI_IFNAME": rt.ifname,
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in rt.args),
            "CNI_PATH": cni_path,
        }
    )
    return env


def plugin_config(net: NetworkConfigList, plugin: Obj, rt: RuntimeConf, prev_result: Obj | None) -> bytes:
    """One plugin's stdin: its configuration with the list's ``name`` and ``cniVersion``, a
    ``runtimeConfig`` of the capabilities it declares, and ``prevResult``."""
    conf = dict(plugin)
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    caps = plugin.get("capabilities") or {}
    runtime_config = {k: v for k, v in rt.capability_args.items() if caps.get(k)}
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    else:
        conf.pop("runtimeConfig", None)
    if prev_result is not None:
        conf["prevResult"] = prev_result
    else:
        conf.pop("prevResult", None)
    return json.dumps(conf).encode()


@dataclass
class Result:
    """A plugin's result, as CNI 1.0 shapes it (0.3/0.4 ``ips[].version`` is dropped)."""

    cni_version: str
    interfaces: list[Obj]
    ips: list[Obj]
    routes: list[Obj]
    dns: Obj
    raw: Obj

    def first_ip(self, version: int = 4) -> str:
        """The first address of the IP ``version`` without its prefix length ("" if none)."""
        for ip in self.ips:
            addr = str(ip.get("address") or "").split("/")[0]
            with contextlib.suppress(ValueError):
                if addr and ipaddress.ip_address(addr).version == version:
                    return addr
        return ""


def parse_result(data: bytes | str | Obj) -> Result:
    """A :class:`Result` from a plugin's stdout (or a cached result object)."""
    if isinstance(data, dict):
        obj = data
    else:
        try:
            obj = json.loads(data or b"{}")
        except ValueError as exc:
            raise CNIError(f"invalid result: {exc}", 999) from exc
    if not isinstance(obj, dict):
        raise CNIError("invalid result: not a JSON object", 999)
    ips = []
    for ip in obj.get("ips") or []:
        if not isinstance(ip, dict) or not ip.get("address"):
            raise CNIError(f"invalid result: bad ips entry {ip!r}", 999)
        ips.append({k: v for k, v in ip.items() if k != "version"})
    return Result(
        str(obj.get("cniVersion") or ""),
        list(obj.get("interfaces") or []),
        ips,
        list(obj.get("routes") or []),
        dict(obj.get("dns") or {}),
        obj,
    )


def parse_error(stdout: bytes, stderr: bytes, returncode: int, plugin: str) -> CNIError:
    """The exception for a failed plugin: its CNI error object if it printed one, else stderr."""
    for text in (stdout, stderr):
        try:
            obj = json.loads(text)
        except ValueError:
            continue
        if isinstance(obj, dict) and "msg" in obj:
            code = obj.get("code")
            return CNIError(
                str(obj.get("msg") or ""),
                int(code) if isinstance(code, int) else 999,
                str(obj.get("details") or ""),
                plugin,
            )
    why = (stderr or stdout).decode(errors="replace").strip() or f"exit status {returncode}"
    return CNIError(why, 999, "", plugin)


def find_plugin(name: str, bin_dirs: list[str]) -> str:
    if "/" in name or not name:
        raise CNIError(f"invalid plugin name {name!r}", 3)
    for d in bin_dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise CNIError(f'failed to find plugin "{name}" in path {bin_dirs}', 3, plugin=name)


async def exec_plugin(path: str, env: dict[str, str], stdin: bytes, timeout: float, plugin: str) -> bytes:
    """Run one plugin; its stdout, or :class:`CNIError`."""
    proc = await asyncio.create_subprocess_exec(
        path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CNIError(f"timed out after {timeout:.0f}s", 999, plugin=plugin) from None
    if proc.returncode != 0:
        raise parse_error(out, err, proc.returncode or 0, plugin)
    return out


def passes_through(plugin: Obj, rt: RuntimeConf) -> bool:
    """``portmap`` without port mappings: its ADD only hands ``prevResult`` on (plugins 1.x), so the
    exec is skipped on the pod-start path.  (DEL and CHECK still run it.)"""
    return plugin.get("type") == "portmap" and not rt.capability_args.get("portMappings")


class CNI:
    """libcni's ``CNIConfig``: runs network configuration lists, keeps the results cache."""

    def __init__(
        self, bin_dirs: list[str], cache_dir: str = DEFAULT_CACHE_DIR, timeout: float = PLUGIN_TIMEOUT
    ) -> None:
        self.bin_dirs = [d for d in bin_dirs if d]
        self.cache_dir = cache_dir
        self.timeout = timeout

    @property
    def cni_path(self) -> str:
        return ":".join(self.bin_dirs)

    async def _run(
        self, command: str, net: NetworkConfigList, plugin: Obj, rt: RuntimeConf, prev: Obj | None
    ) -> bytes:
        ptype = str(plugin["type"])
        path = find_plugin(ptype, self.bin_dirs)
        env = build_env(command, rt, self.cni_path)
        return await exec_plugin(path, env, plugin_config(net, plugin, rt, prev), self.timeout, ptype)

    async def add(self, net: NetworkConfigList, rt: RuntimeConf) -> Result:
        prev: Obj | None = None
        for plugin in net.plugins:
            if prev is not None and passes_through(plugin, rt):
                continue
            out = await self._run("ADD", net, plugin, rt, prev)
            prev = parse_result(out).raw
        result = parse_result(prev or {})
        self.write_cache(net, rt, result.raw)
        return result

    async def delete(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL in reverse order with the cached result (spec 0.4+); the cache entry is removed."""
        cached = self.read_cache(net.name, rt.container_id, rt.ifname)
        prev = (cached or {}).get("result") if net.cni_version not in ("0.3.0", "0.3.1") else None
        for plugin in reversed(net.plugins):
            await self._run("DEL", net, plugin, rt, prev)
        self.remove_cache(net.name, rt.container_id, rt.ifname)

    async def check(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        cached = self.read_cache(net.name, rt.container_id, rt.ifname)
        if cached is None or not cached.get("result"):
            raise CNIError(f"no cached result for {rt.container_id} {rt.ifname}", 999)
        for plugin in net.plugins:
            await self._run("CHECK", net, plugin, rt, cached["result"])

    # libcni's cache: results/<net>-<containerID>-<ifname>

    def cache_path(self, net_name: str, container_id: str, ifname: str) -> str:
        return os.path.join(self.cache_dir, "results", f"{net_name}-{container_id}-{ifname}")

    def write_cache(self, net: NetworkConfigList, rt: RuntimeConf, result: Obj) -> None:
        entry = {
            "kind": "cniCacheV1",
            "containerId": rt.container_id,
            "config": base64.b64encode(net.raw).decode(),
            "ifName": rt.ifname,
            "networkName": net.name,
            "cniArgs": [list(a) for a in rt.args],
            "capabilityArgs": rt.capability_args,
            "result": result,
        }
        path = self.cache_path(net.name, rt.container_id, rt.ifname)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, path)

    def read_cache(self, net_name: str, container_id: str, ifname: str) -> Obj | None:
        try:
            with open(self.cache_path(net_name, container_id, ifname)) as f:
                obj = json.load(f)
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None

    def remove_cache(self, net_name: str, container_id: str, ifname: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.cache_path(net_name, container_id, ifname))

    def cached_ids(self, net_name: str, ifname: str) -> set[str]:
        """Container IDs with a cached result for the network and interface."""
        return {cid for cid, ifn in cache_entries(self.cache_dir, net_name).values() if ifn == ifname}


def cache_entries(cache_dir: str, net_name: str) -> dict[str, tuple[str, str]]:
    """The results cache files of network ``net_name``: ``{file name: (container id, ifname)}``.
    A file name alone is ambiguous (``<net>-<id>-<ifname>``: network ``a`` would take ``a-b``'s
    ``a-b-<id>-eth0``), so the entry's own ``networkName`` decides; an unreadable entry counts
    when the rest of its name has the shape ``<id>-<ifname>`` with no other dash."""
    out: dict[str, tuple[str, str]] = {}
    results = os.path.join(cache_dir, "results")
    try:
        files = os.listdir(results)
    except FileNotFoundError:
        return out
    prefix = f"{net_name}-"
    for f in files:
        if not f.startswith(prefix) or f.endswith(".tmp"):
            continue
        try:
            with open(os.path.join(results, f)) as fh:
                entry = json.load(fh)
        except (OSError, ValueError):
            entry = None
        if isinstance(entry, dict) and entry.get("networkName"):
            cid, ifname = str(entry.get("containerId") or ""), str(entry.get("ifName") or "")
            if entry["networkName"] == net_name and cid and f == f"{net_name}-{cid}-{ifname}":
                out[f] = (cid, ifname)
            continue
        cid, _, ifname = f[len(prefix) :].partition("-")
        if cid and ifname and "-" not in ifname:
            out[f] = (cid, ifname)
    return out


# -- the kubelet's pod network -------------------------------------------------------------------


def masq_chain(network_name: str, container_id: str) -> str:
    """The bridge plugin's per-container masquerade chain (``utils.FormatChainName``)."""
    return ("CNI-" + hashlib.sha512((network_name + container_id).encode()).hexdigest())[:28]


def ip_masq(net: NetworkConfigList) -> bool:
    """Whether a network's bridge plugin masquerades per pod (``ipMasq``: a ``CNI-…`` nat chain
    per sandbox); the kubelet's own conflist does not (one rule per network)."""
    return any(p.get("type") == "bridge" and p.get("ipMasq") for p in net.plugins)


def _iptables_remove_chain(table: str, chain: str) -> None:
    """Delete the rules jumping to ``chain`` in ``table`` and the chain itself (best effort)."""
    if not shutil.which("iptables-save"):
        return
    dump = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
    if f":{chain} " not in dump:
        return
    for line in dump.splitlines():
        words = line.split()
        if (
            len(words) > 2
            and words[0] == "-A"
            and words[1] != chain
            and line.rstrip().endswith(f"-j {chain}")
        ):
            subprocess.run(["iptables", "-t", table, "-D", *shlex.split(line[3:])], capture_output=True)
    subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
    subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)


# the portmap plugin's nat chains shared by every network on the host (it never deletes them); a
# pod's port mappings are a CNI-DN-… chain of its own that CNI-HOSTPORT-DNAT jumps to
PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")


def portmap_cleanup(nat_dump: str) -> str:
    """The ``iptables-restore --noflush`` input that removes the portmap plugin's shared chains, and
    the rules jumping to them, from a host whose nat table is ``nat_dump`` (``iptables-save -t
    nat``); empty while a ``CNI-DN-…`` chain remains (a pod of some network still maps a port) or
    when none of the chains is there.

    Every rule is deleted by its exact text in the dump (``-D`` of each jump to the chains, then
    ``-D`` of each rule in them), then the chains themselves (``-X``); no ``-F``.  Applied as one
    transaction, the removal fails as a whole, changing nothing, if the table moved on since the
    dump: a rule added to one of the chains makes its ``-X`` fail (the chain is not empty), a rule
    jumping to one of them (a new pod's ``CNI-DN-…`` chain) makes its ``-X`` fail (the chain is
    referenced), a dumped rule already gone makes its ``-D`` fail.  Not covered: a pod's
    ``CNI-DN-…`` chain created but still without rules at the commit; that pod's portmap ADD then
    fails on its next rule (the chains are gone) and its sandbox is set up again."""
    lines = nat_dump.splitlines()
    chains = {line[1:].split()[0] for line in lines if line.startswith(":") and len(line) > 1}
    if any(c.startswith("CNI-DN-") for c in chains):
        return ""
    ours = [c for c in PORTMAP_CHAINS if c in chains]
    if not ours:
        return ""
    jumps, inside = [], []
    for line in lines:
        words = shlex.split(line) if line.startswith("-A ") else []
        if len(words) < 2:
            continue
        rule = "-D " + line[3:].rstrip()
        if words[1] in ours:
            inside.append(rule)
        elif len(words) > 3 and words[-2] in ("-j", "-g") and words[-1] in ours:
            jumps.append(rule)
    return "\n".join(["*nat", *jumps, *inside, *(f"-X {c}" for c in ours), "COMMIT", ""])


def remove_unused_portmap_chains(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> bool:
    """Remove the portmap plugin's shared nat chains once no pod on the host maps a port: one
    ``iptables-restore -w --noflush`` transaction made from one ``iptables-save -t nat``
    (:func:`portmap_cleanup`).  If another pod's portmap ADD changed the chains between the dump
    and the commit, the transaction fails as a whole and everything is left as it is (that pod uses
    the chains; a later clean-up removes them).  Whether the chains were removed.  ``run``: how
    commands are run (:func:`subprocess.run`'s signature)."""
    if not shutil.which("iptables-save") or not shutil.which("iptables-restore"):
        return False
    try:
        dump = run(["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30)
        if dump.returncode != 0:
            return False
        script = portmap_cleanup(dump.stdout)
        if not script:
            return False
        done = run(
            ["iptables-restore", "-w", "--noflush"],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.debug("portmap chains not removed: %s", e)
        return False
    if done.returncode != 0:
        log.debug("portmap chains left (changed since the dump): %s", done.stderr.strip())
        return False
    return True


def host_local_allocations(data_dir: str) -> dict[str, tuple[str, str]]:
    """host-local's allocations in its network directory: ``{ip: (container id, ifname)}``."""
    out: dict[str, tuple[str, str]] = {}
    with contextlib.suppress(FileNotFoundError):
        for f in os.listdir(data_dir):
            if f.startswith("last_reserved_ip") or f == "lock":
                continue
            try:
                with open(os.path.join(data_dir, f)) as fh:
                    lines = fh.read().split()
            except OSError:
                continue
            if lines:
                out[f] = (lines[0], lines[1] if len(lines) > 1 else "eth0")
    return out


class PodNetwork:
    """The pod network of one kubelet: its conflist, and ADD/DEL of sandboxes."""

    def __init__(
        self,
        network_name: str,
        conf_dir: str = DEFAULT_CONF_DIR,
        bin_dirs: str = DEFAULT_BIN_DIRS,
        cache_dir: str = DEFAULT_CACHE_DIR,
        bridge: str | None = None,
        timeout: float = PLUGIN_TIMEOUT,
        mtu: int | None = None,
        cluster_cidr: str = "",
    ) -> None:
        self.network_name = network_name
        self.mtu = mtu  # the pods' MTU (None: the bridge plugin's default, the host's)
        self.cluster_cidr = cluster_cidr  # not masqueraded to (pods of other nodes); "": the pod CIDR
        self.conf_dir = conf_dir
        self.cache_dir = cache_dir
        self.bridge = bridge or bridge_name(network_name)
        self.cni = CNI(bin_dirs.split(":"), cache_dir, timeout)
        self.net: NetworkConfigList | None = None
        self.loopback = NetworkConfigList(
            "cni-loopback", CNI_VERSION, [{"type": "loopback"}], json.dumps(LOOPBACK_CONF).encode()
        )
        self._ips: dict[str, str] = {}  # sandbox id -> pod IP
        self.pod_cidr = ""

    @property
    def ready(self) -> bool:
        return self.net is not None

    def configure(self, pod_cidr: str) -> str:
        """Write the conflist for ``pod_cidr`` and load the network from the conf dir: its path."""
        if len(self.bridge) > 15:
            raise ValueError(f"bridge name {self.bridge!r} is longer than 15 characters")
        path = write_conflist(
            self.conf_dir,
            generate_conflist(self.network_name, self.bridge, pod_cidr, self.cache_dir, self.mtu),
        )
        self.net = load_conflist(self.conf_dir, self.network_name)
        why = ensure_bridge_netfilter()
        if why:
            log.error(
                "pod network %s: bridged pod traffic may skip iptables (NetworkPolicy between pods of"
                " this node not enforced, Services with an endpoint on this node may fail): %s",
                self.network_name,
                why,
            )
        ensure_host_rules(self.network_name, self.bridge, pod_cidr, self.cluster_cidr)
        self.pod_cidr = pod_cidr
        return path

    def ensure_host_rules(self) -> None:
        """Put back the network's host rules (:func:`ensure_host_rules`) if something removed
        them (a firewall reload, an iptables flush); the kubelet calls it on a timer."""
        if self.pod_cidr:
            ensure_host_rules(self.network_name, self.bridge, self.pod_cidr, self.cluster_cidr)

    def _net(self) -> NetworkConfigList:
        if self.net is None:
            raise CNIError("network plugin is not ready: cni config uninitialized", 999)
        return self.net

    @staticmethod
    def _args(pod_namespace: str, pod_name: str, sandbox_id: str) -> list[tuple[str, str]]:
        return [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", pod_namespace),
            ("K8S_POD_NAME", pod_name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
        ]

    async def setup(
        self,
        sandbox_id: str,
        netns: str,
        pod_namespace: str,
        pod_name: str,
        port_mappings: list[Obj] | None = None,
    ) -> tuple[str, float]:
        """ADD ``eth0`` (and ``lo``) of a started sandbox: ``(pod IP, seconds it took)``; on a
        failure what was set up is deleted again and :class:`CNIError` is raised."""
        t0 = time.perf_counter()
        net = self._net()
        args = self._args(pod_namespace, pod_name, sandbox_id)
        rt = RuntimeConf(sandbox_id, netns, "eth0", args, {"portMappings": port_mappings or []})
        lo = RuntimeConf(sandbox_id, netns, "lo", args)
        results = await asyncio.gather(
            self.cni.add(net, rt), self.cni.add(self.loopback, lo), return_exceptions=True
        )
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            with contextlib.suppress(CNIError, OSError):
                await self.cni.delete(net, rt)
            if isinstance(failed, CNIError | OSError):
                raise failed if isinstance(failed, CNIError) else CNIError(str(failed), 999)
            raise failed
        result = results[0]
        assert isinstance(result, Result)
        ip = result.first_ip(4) or result.first_ip(6)
        if not ip:
            with contextlib.suppress(CNIError, OSError):
                await self.cni.delete(net, rt)
            raise CNIError(f"network {net.name} gave sandbox {sandbox_id[:12]} no IP address", 999)
        self._ips[sandbox_id] = ip
        return ip, time.perf_counter() - t0

    async def teardown(self, sandbox_id: str, netns: str, port_mappings: list[Obj] | None = None) -> bool:
        """DEL the sandbox's ``eth0`` (``netns`` "" once the namespace is gone); False when there
        was nothing to delete.  The loopback needs no DEL (it goes with the namespace).
        ``port_mappings`` (the pod's hostPorts) are portmap's capability argument when no cached
        entry has them: a kubelet killed between portmap's ADD and the cache write left its
        rules, which a DEL without mappings leaves in place."""
        self._ips.pop(sandbox_id, None)
        if netns and not os.path.exists(netns):
            netns = ""
        net = self.net
        cached = self.cni.read_cache(self.network_name, sandbox_id, "eth0")
        if net is None and cached is not None:
            with contextlib.suppress(CNIError):
                net = parse_conflist(base64.b64decode(cached.get("config") or ""))
        if net is None:
            return False
        if cached is None and not netns and not self._allocated(sandbox_id):
            return False
        args = [tuple(a) for a in (cached or {}).get("cniArgs") or []]
        caps = (cached or {}).get("capabilityArgs") or {}
        if cached is None and port_mappings:
            caps = {"portMappings": port_mappings}
        rt = RuntimeConf(sandbox_id, netns, "eth0", [(str(k), str(v)) for k, v in args], dict(caps))
        added_with = net
        if cached is not None:  # the configuration the ADD ran with
            with contextlib.suppress(CNIError, ValueError):
                added_with = parse_conflist(base64.b64decode(cached.get("config") or ""))
        await self.cni.delete(net, rt)
        self.cni.remove_cache(self.loopback.name, sandbox_id, "lo")
        if not netns and ip_masq(added_with):
            # the bridge plugin only removes its masquerade chain from inside the netns (an
            # iptables-save per sandbox: only for a network whose bridge masquerades per pod)
            await asyncio.to_thread(_iptables_remove_chain, "nat", masq_chain(net.name, sandbox_id))
        return True

    def _data_dir(self) -> str:
        net = self.net
        ipam = (net.plugins[0].get("ipam") or {}) if net else {}
        return os.path.join(
            str(ipam.get("dataDir") or os.path.join(DEFAULT_CACHE_DIR, "networks")), self.network_name
        )

    def _allocated(self, sandbox_id: str) -> bool:
        return any(cid == sandbox_id for cid, _ in host_local_allocations(self._data_dir()).values())

    def ip_of(self, sandbox_id: str) -> str:
        """The pod IP of a sandbox: from memory, else from the results cache ("" if none)."""
        ip = self._ips.get(sandbox_id)
        if ip is None:
            cached = self.cni.read_cache(self.network_name, sandbox_id, "eth0")
            ip = parse_result(cached.get("result") or {}).first_ip(4) if cached else ""
            if ip:
                self._ips[sandbox_id] = ip
        return ip

    def known_sandboxes(self) -> set[str]:
        """Sandbox IDs holding an allocation: a cached result or a host-local reservation."""
        ids = self.cni.cached_ids(self.network_name, "eth0")
        ids |= {cid for cid, _ in host_local_allocations(self._data_dir()).values()}
        return ids

    def attached_sandboxes(self) -> set[str]:
        """Sandbox IDs with anything of the network's on disk: an ``eth0`` allocation or a cached
        ``lo`` result."""
        return self.known_sandboxes() | self.cni.cached_ids(self.loopback.name, "lo")

    async def garbage_collect(self, live: dict[str, str], candidates: set[str] | None = None) -> list[str]:
        """DEL every attachment whose sandbox is not in ``live`` (sandbox id -> netns, "" when not
        running): what a kubelet killed mid-teardown, a failed DEL, or a sandbox removed behind
        its back, left.  With ``candidates`` (:meth:`attached_sandboxes` read *before* ``live``
        was listed) only those are looked at: a sandbox set up after the listing is not taken
        for a gone one."""
        gone = []
        known = self.known_sandboxes()
        if candidates is not None:
            known &= candidates
        for sid in sorted(known):
            if sid in live:
                continue
            try:
                await self.teardown(sid, "")
                gone.append(sid)
            except CNIError as exc:
                log.warning("releasing the pod network of sandbox %s failed: %s", sid[:12], exc)
        for sid in self.cni.cached_ids(self.loopback.name, "lo"):
            if sid not in live and (candidates is None or sid in candidates):
                self.cni.remove_cache(self.loopback.name, sid, "lo")
        return gone


def cleanup_network(
    conf_dir: str,
    network_name: str,
    bridge: str | None = None,
    cache_dir: str = DEFAULT_CACHE_DIR,
    bin_dirs: str = DEFAULT_BIN_DIRS,
) -> None:
    """Remove a kubelet's pod network from the host (run once its kubelet and pods are gone): a
    DEL of every attachment still cached (their iptables rules go with it), then the conflist, the
    bridge device, the portmap plugin's shared chains when no other pod uses them, host-local's
    allocations and the cached results of the network."""
    pn = PodNetwork(network_name, conf_dir, bin_dirs, cache_dir, bridge)
    with contextlib.suppress(CNIError):
        pn.net = load_conflist(conf_dir, network_name)
    # in a thread of its own: the caller may be inside an event loop
    worker = threading.Thread(target=lambda: asyncio.run(pn.garbage_collect({})), name="cni-cleanup")
    worker.start()
    worker.join()
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(conf_dir, f"10-{network_name}.conflist"))
    subprocess.run(["ip", "link", "del", pn.bridge], capture_output=True)
    if shutil.which("iptables-save"):
        _remove_commented_rules(network_name, [])
    remove_unused_portmap_chains()
    shutil.rmtree(pn._data_dir(), ignore_errors=True)
    shutil.rmtree(os.path.join(cache_dir, "networks", network_name), ignore_errors=True)
    for f in cache_entries(cache_dir, network_name):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(cache_dir, "results", f))
