"""``minik up | down | delete | status | logs``: a local cluster as supervised processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml
from rich.console import Console

console = Console()
CONTEXT = "minik"


def default_state_dir() -> Path:
    return Path(os.environ.get("MINIK_STATE_DIR") or Path.home() / ".minik")


def kubeconfig_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def supervisor_pid(state: Path) -> int | None:
    try:
        pid = int((state / "supervisor.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def write_kubeconfig(server: str, context: str = CONTEXT) -> Path:
    """Merge a cluster, user and context named ``context`` into the kubeconfig and make it current."""
    path = kubeconfig_path()
    data: dict[str, Any] = {}
    if path.exists():
        data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Config")
    data.setdefault("preferences", {})

    def upsert(section: str, entry: dict[str, Any]) -> None:
        items = [e for e in data.get(section) or [] if e.get("name") != entry["name"]]
        items.append(entry)
        data[section] = items

    upsert("clusters", {"name": context, "cluster": {"server": server}})
    upsert("users", {"name": context, "user": {}})
    upsert(
        "contexts",
        {"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}},
    )
    data["current-context"] = context
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".minik-tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def remove_kubeconfig_context(context: str = CONTEXT) -> None:
    path = kubeconfig_path()
    if not path.exists():
        return
    data = yaml.safe_load(path.read_text()) or {}
    for section in ("clusters", "users", "contexts"):
        data[section] = [e for e in data.get(section) or [] if e.get("name") != context]
    if data.get("current-context") == context:
        data["current-context"] = ""
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def up(
    state_dir: Path = typer.Option(None, help="where state and logs live (default ~/.minik)"),
    api_port: int = typer.Option(8080, help="the API server's port on 127.0.0.1"),
    etcd_port: int = typer.Option(2379, help="etcd's client port on 127.0.0.1"),
    node_name: str = typer.Option("minik-node-1", help="this host's node name"),
    pod_cidr: str = typer.Option("10.244.0.0/24", help="this node's pod network"),
    service_cidr: str = typer.Option("10.96.0.0/12", help="the range Service ClusterIPs come from"),
    timeout: float = typer.Option(90, help="seconds to wait for the cluster to become ready"),
) -> None:
    """Start a local cluster on this host as separate, supervised processes."""
    state = state_dir or default_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    pid = supervisor_pid(state)
    if pid is not None:
        cfg = json.loads((state / "config.json").read_text())
        console.print(
            f"minik is already running (supervisor pid {pid}) at http://127.0.0.1:{cfg['api_port']}"
        )
        raise typer.Exit(0)
    for what, port in (("API server", api_port), ("etcd", etcd_port), ("etcd peer", etcd_port + 1)):
        if port_in_use(port):
            console.print(
                f"[red]port {port} on 127.0.0.1 (for the {what}) is already in use[/red]; "
                "stop what uses it or pick other ports (--api-port, --etcd-port)"
            )
            raise typer.Exit(1)
    cfg = {
        "api_port": api_port,
        "etcd_port": etcd_port,
        "etcd_peer_port": etcd_port + 1,
        "node_name": node_name,
        "pod_cidr": pod_cidr,
        "service_cidr": service_cidr,
    }
    (state / "config.json").write_text(json.dumps(cfg, indent=2))
    (state / "logs").mkdir(exist_ok=True)
    log = open(state / "logs" / "supervisor.log", "ab")
    subprocess.Popen(
        [sys.executable, "-m", "cli.supervisor", "--state-dir", str(state)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + timeout
    with console.status("starting etcd and the API server…") as status:
        while True:
            try:
                if httpx.get(f"{server}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                console.print(
                    f"[red]the API server did not become ready in {timeout:.0f}s[/red]; see {state}/logs"
                )
                raise typer.Exit(1)
            running = _component_status(state)
            status.update("starting: " + ", ".join(f"{k} {'up' if v else '…'}" for k, v in running.items()))
            time.sleep(0.3)
    path = write_kubeconfig(server)
    console.print(f"[green]minik is up[/green]: API server at {server}")
    for name, alive in _component_status(state).items():
        console.print(f"  {name:20} {'running' if alive else 'starting'}")
    console.print(f"kubeconfig: context [bold]{CONTEXT}[/bold] written to {path} and made current")
    console.print(f"logs: {state}/logs/")


def _component_status(state: Path) -> dict[str, bool]:
    try:
        data = json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, info in data.items():
        alive = False
        if info.get("pid"):
            try:
                os.kill(info["pid"], 0)
                alive = True
            except OSError:
                pass
        out[name] = alive
    return out


def down(state_dir: Path = typer.Option(None, help="state directory (default ~/.minik)")) -> None:
    """Stop every process of the local cluster (its state is kept)."""
    state = state_dir or default_state_dir()
    pid = supervisor_pid(state)
    if pid is None:
        console.print("minik is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    with console.status("stopping…"):
        while supervisor_pid(state) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
    if supervisor_pid(state) is not None:
        os.kill(pid, signal.SIGKILL)
    cleanup_host(state)
    console.print("minik stopped (state kept; `minik delete` removes it)")


def cleanup_host(state: Path) -> None:
    """Remove what the cluster made on this host: pod containers, the pod network, proxy rules."""
    try:
        cfg = json.loads((state / "config.json").read_text())
    except (OSError, ValueError):
        return
    node = cfg.get("node_name", "minik-node-1")
    proxy = Path(sys.executable).parent / "minik-proxy"
    if proxy.exists():
        subprocess.run([str(proxy), "--cleanup", "--node-name", node], capture_output=True, timeout=60)
    try:
        import docker
    except ImportError:
        return
    try:
        client = docker.from_env()
    except docker.errors.DockerException:
        return
    try:
        removed = 0
        for c in client.containers.list(all=True, filters={"label": f"io.minik.node={node}"}):
            c.remove(force=True)
            removed += 1
        for n in client.networks.list(filters={"label": f"io.minik.node={node}"}):
            try:
                n.remove()
            except docker.errors.APIError:
                pass
        if removed:
            console.print(f"removed {removed} pod container(s) of node {node}")
    finally:
        client.close()


def delete(state_dir: Path = typer.Option(None, help="state directory (default ~/.minik)")) -> None:
    """Stop the local cluster and remove its state and kubeconfig context."""
    state = state_dir or default_state_dir()
    down(state)
    shutil.rmtree(state, ignore_errors=True)
    remove_kubeconfig_context()
    console.print(f"removed {state}")


def status(state_dir: Path = typer.Option(None, help="state directory (default ~/.minik)")) -> None:
    """Show each component and its health."""
    state = state_dir or default_state_dir()
    if supervisor_pid(state) is None:
        console.print("minik is not running")
        raise typer.Exit(1)
    cfg = json.loads((state / "config.json").read_text())
    data = json.loads((state / "status.json").read_text())
    alive = _component_status(state)
    for name, info in data.items():
        console.print(
            f"{name:20} {'running' if alive.get(name) else 'down':8} restarts={info.get('restarts', 0)}"
        )
    try:
        ready = httpx.get(f"http://127.0.0.1:{cfg['api_port']}/readyz", timeout=2).text
    except httpx.HTTPError as e:
        ready = f"unreachable ({e})"
    console.print(f"API server readyz: {ready}")


def logs(
    component: str = typer.Argument(..., help="etcd, apiserver, supervisor, …"),
    follow: bool = typer.Option(False, "-f", "--follow"),
    state_dir: Path = typer.Option(None, help="state directory (default ~/.minik)"),
) -> None:
    """Print a component's log."""
    state = state_dir or default_state_dir()
    path = state / "logs" / f"{component}.log"
    if not path.exists():
        console.print(f"no log for {component!r} in {state}/logs")
        raise typer.Exit(1)
    if follow:
        os.execvp("tail", ["tail", "-n", "100", "-f", str(path)])
    sys.stdout.write(path.read_text())
