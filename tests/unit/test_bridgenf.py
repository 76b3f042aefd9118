"""br_netfilter: loaded with modprobe when /proc/sys/net/bridge is missing, then
bridge-nf-call-iptables set to 1, by the kubelet's pod network and by minik-proxy."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

from apimachinery import bridgenf
from kubelet import cni
from proxy import kernel

MODPROBE = """#!/bin/sh
echo "$@" >> "{log}"
[ "$1" = br_netfilter ] || exit 1
{body}
"""


def fake_modprobe(tmp_path: Path, sysctl_dir: Path, body: str = "") -> tuple[str, Path]:
    log = tmp_path / "modprobe.log"
    body = body or f'mkdir -p "{sysctl_dir}" && echo 0 > "{sysctl_dir}/bridge-nf-call-iptables"'
    tool = tmp_path / "modprobe"
    tool.write_text(MODPROBE.format(log=log, body=body))
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return str(tool), log


def test_module_loaded_when_missing_then_sysctl_set(tmp_path: Path) -> None:
    sysctl_dir = tmp_path / "bridge"
    tool, log = fake_modprobe(tmp_path, sysctl_dir)
    assert bridgenf.ensure_bridge_netfilter(sysctl_dir, tool) == ""
    assert log.read_text() == "br_netfilter\n"
    assert (sysctl_dir / "bridge-nf-call-iptables").read_text().strip() == "1"
    # loaded already: no modprobe, a 0 is set to 1
    (sysctl_dir / "bridge-nf-call-iptables").write_text("0\n")
    assert bridgenf.ensure_bridge_netfilter(sysctl_dir, tool) == ""
    assert log.read_text() == "br_netfilter\n"
    assert (sysctl_dir / "bridge-nf-call-iptables").read_text().strip() == "1"


def test_failures_are_reported(tmp_path: Path, monkeypatch: Any) -> None:
    sysctl_dir = tmp_path / "bridge"
    monkeypatch.setattr(bridgenf.shutil, "which", lambda _name: None)
    monkeypatch.setattr(bridgenf, "MODPROBE_PATHS", ())
    assert "install kmod" in bridgenf.ensure_bridge_netfilter(sysctl_dir)
    tool, _log = fake_modprobe(
        tmp_path, sysctl_dir, "echo 'modprobe: FATAL: Module br_netfilter not found' >&2; exit 1"
    )
    why = bridgenf.ensure_bridge_netfilter(sysctl_dir, tool)
    assert why == "modprobe br_netfilter failed: modprobe: FATAL: Module br_netfilter not found"


def test_pod_network_and_proxy_ensure_it(tmp_path: Path, monkeypatch: Any) -> None:
    calls: list[str] = []
    monkeypatch.setattr(cni, "ensure_bridge_netfilter", lambda: calls.append("kubelet") or "no module")
    monkeypatch.setattr(cni, "ensure_host_rules", lambda *a: None)
    pn = cni.PodNetwork("mkt-brnf", str(tmp_path / "conf"), cache_dir=str(tmp_path / "cache"))
    pn.configure("10.244.9.0/24")
    assert pn.ready

    async def nothing(*a: Any, **kw: Any) -> None:
        return None

    monkeypatch.setattr(kernel, "ensure_bridge_netfilter", lambda: calls.append("proxy") or "")
    monkeypatch.setattr(kernel, "set_sysctl", lambda *a: True)
    monkeypatch.setattr(kernel.ipt, "remove_chains", nothing)
    proxier = kernel.KernelProxier.__new__(kernel.KernelProxier)
    proxier.prefix, proxier.nodeport_addresses = "MKT", []
    proxier.rules = kernel.KernelRules("MKT")
    monkeypatch.setattr(proxier.rules, "ensure_jumps", nothing)
    asyncio.run(proxier.prepare())
    assert calls == ["kubelet", "proxy"]
