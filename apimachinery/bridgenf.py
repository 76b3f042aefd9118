"""Bridged traffic through iptables: the ``br_netfilter`` module and
``net.bridge.bridge-nf-call-iptables=1``, which the kubelet (pod network) and minik-proxy
(Services, NetworkPolicy) both need.

Pods of one node share a bridge; without ``br_netfilter`` a packet between two of them is
switched by the bridge and never meets iptables: NetworkPolicy is silently not enforced between
them, and a ClusterIP whose endpoint is on the client's own bridge breaks (the reply skips the
reverse DNAT).  Docker loaded the module until 27.3; kubeadm asks the administrator to load it.
Here it is loaded with ``modprobe`` when ``/proc/sys/net/bridge`` is missing and ``modprobe``
exists, as ``sudo modprobe br_netfilter`` would."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

BRIDGE_SYSCTL_DIR = Path("/proc/sys/net/bridge")
CALL_IPTABLES = "bridge-nf-call-iptables"
MODPROBE_PATHS = ("/usr/sbin/modprobe", "/sbin/modprobe")  # where it is when not on PATH


def ensure_bridge_netfilter(sysctl_dir: Path = BRIDGE_SYSCTL_DIR, modprobe: str | None = None) -> str:
    """Load ``br_netfilter`` if needed and set ``bridge-nf-call-iptables`` to 1: "" when done,
    else why not (the caller logs it).  ``modprobe`` is the command's path (default: found on
    PATH)."""
    if not sysctl_dir.exists():
        tool = (
            modprobe
            or shutil.which("modprobe")
            or next((p for p in MODPROBE_PATHS if Path(p).exists()), None)
        )
        if tool is None:
            return (
                f"{sysctl_dir} is missing (the br_netfilter module is not loaded) and there is no"
                " modprobe to load it: install kmod or run `modprobe br_netfilter`"
            )
        try:
            done = subprocess.run([tool, "br_netfilter"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"modprobe br_netfilter failed: {exc}"
        if done.returncode != 0 or not sysctl_dir.exists():
            why = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            return f"modprobe br_netfilter failed: {why}"
        log.info("loaded the br_netfilter module (bridged pod traffic passes iptables)")
    path = sysctl_dir / CALL_IPTABLES
    try:
        if path.read_text().strip() != "1":
            path.write_text("1\n")
            log.info("set net.bridge.%s = 1 (bridged pod traffic passes iptables)", CALL_IPTABLES)
    except OSError as exc:
        return f"cannot set net.bridge.{CALL_IPTABLES}=1: {exc}"
    return ""
