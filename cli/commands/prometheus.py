"""``minik prometheus up|down|status``: a real Prometheus server (Debian's ``prometheus`` package)
scraping every component of the local cluster (``minik up``).

``up`` writes ``STATE/prometheus/prometheus.yml`` with one scrape job per component:

- ``apiserver`` (``https://127.0.0.1:API_PORT/metrics``) and ``kubelet``
  (``https://NODE_IP:KUBELET_PORT/metrics``) over TLS, presenting a client certificate from the
  cluster CA (``STATE/pki/prometheus.crt``: user ``system:minik-prometheus`` in group
  ``system:monitoring``, which the bootstrap policy lets read ``/metrics`` and ``nodes/metrics``);
- ``scheduler``, ``controller-manager``, ``proxy``, ``dns``, ``ingress`` and ``metrics-server`` over
  plain HTTP on their loopback metrics ports (``--metrics-bind-address``: 10259, 10257, 10249, 9153,
  10254 and 10253 by default);
- ``prometheus`` itself;

then starts ``prometheus`` detached (its data in ``STATE/prometheus/data``, its log in
``STATE/logs/prometheus.log``) on ``127.0.0.1:PORT`` (default 19090, loopback only), waits until
every target has been scraped and prints each one's health and the URL.  ``down`` stops it (its
data stays); ``minik down`` stops it too; ``status`` prints the URL and the targets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="A Prometheus server scraping every component of the local cluster.", no_args_is_help=True
)
console = Console(highlight=False)

DEFAULT_PORT = 19090
SCRAPE_INTERVAL = "5s"
USER, GROUPS = "system:minik-prometheus", ["system:monitoring"]


def plain_ports() -> dict[str, int]:
    """The plain-HTTP metrics ports of the components minik up starts, by component, when their
    argv gives none (their --metrics-bind-address defaults): the supervisor's for the default
    kubelet port (``cli.supervisor.settings``)."""
    from ..supervisor import settings

    ports: dict[str, int] = settings({"advertise_address": "127.0.0.1"})["metrics_ports"]
    return ports


def prometheus_dir(state: Path) -> Path:
    return state / "prometheus"


def _metrics_address(argv: list[str], default_port: int) -> str | None:
    """The ``HOST:PORT`` a component's argv gives ``--metrics-bind-address`` (its default when not
    given; None when turned off)."""
    value = f"127.0.0.1:{default_port}"
    for i, arg in enumerate(argv):
        if arg == "--metrics-bind-address" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--metrics-bind-address="):
            value = arg.split("=", 1)[1]
    host, _, port = value.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return None
    host = host or "0.0.0.0"
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def scrape_config(
    cfg: dict[str, Any], state: Path, argvs: dict[str, list[str]], port: int = DEFAULT_PORT
) -> dict[str, Any]:
    """The Prometheus configuration for the cluster ``cfg`` describes (``argvs``: each running
    component's command line, from ``status.json``)."""
    pki = state / "pki"
    tls = {
        "ca_file": str(pki / "ca.crt"),
        "cert_file": str(pki / "prometheus.crt"),
        "key_file": str(pki / "prometheus.key"),
    }
    node_ip = cfg.get("advertise_address") or "127.0.0.1"
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "apiserver",
            "scheme": "https",
            "tls_config": tls,
            "static_configs": [{"targets": [f"127.0.0.1:{cfg.get('api_port', 6443)}"]}],
        },
        {
            "job_name": "kubelet",
            "scheme": "https",
            # the kubelet's serving certificate names 127.0.0.1 and the node's address
            "tls_config": tls,
            "static_configs": [
                {
                    "targets": [f"{node_ip}:{cfg.get('kubelet_port', 10250)}"],
                    "labels": {"node": str(cfg.get("node_name", ""))},
                }
            ],
        },
    ]
    for name, default in plain_ports().items():
        address = _metrics_address(argvs.get(name, []), default)
        if address is not None:
            jobs.append({"job_name": name, "static_configs": [{"targets": [address]}]})
    jobs.append({"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]})
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": jobs,
    }


def _state(state_dir: Path | None) -> tuple[Path, dict[str, Any]]:
    from ..cluster import default_state_dir, read_json

    state = (state_dir or default_state_dir()).absolute()
    cfg = read_json(state / "config.json")
    if not cfg:
        console.print(f"[red]no minik cluster in {state}[/red]: `minik up` starts one")
        raise typer.Exit(1)
    return state, cfg


def _argvs(state: Path) -> dict[str, list[str]]:
    from ..cluster import read_json

    status = read_json(state / "status.json")
    out: dict[str, list[str]] = {}
    for name, entry in (status.get("components") or status).items():
        if isinstance(entry, dict) and isinstance(entry.get("argv"), list):
            out[name] = [str(a) for a in entry["argv"]]
    return out


def running(state: Path) -> tuple[int, str] | None:
    """The pid and URL of this cluster's Prometheus server, when it runs."""
    from ..cluster import _cmdline, same_process

    info_file = prometheus_dir(state) / "server.json"
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return None
    pid, argv = int(info.get("pid", 0)), info.get("argv") or []
    if pid <= 0 or not same_process(argv, _cmdline(pid)):
        return None
    return pid, str(info.get("url", ""))


def url_if_running(state: Path) -> str | None:
    """For ``minik status``: the URL of the running Prometheus server, else None."""
    found = running(state)
    return found[1] if found else None


def targets(url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=timeout)
    r.raise_for_status()
    return list(r.json()["data"]["activeTargets"])


def targets_table(found: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("JOB", "ENDPOINT", "HEALTH", "LAST SCRAPE", "ERROR"):
        table.add_column(column)
    for t in sorted(found, key=lambda t: t["labels"].get("job", "")):
        health = t.get("health", "unknown")
        colour = {"up": "green", "down": "red"}.get(health, "yellow")
        table.add_row(
            t["labels"].get("job", ""),
            t.get("scrapeUrl", ""),
            f"[{colour}]{health}[/{colour}]",
            f"{float(t.get('lastScrapeDuration') or 0) * 1000:.0f} ms",
            t.get("lastError") or "",
        )
    return table


def stop(state: Path) -> bool:
    """Stop this cluster's Prometheus server (True if one ran)."""
    found = running(state)
    (prometheus_dir(state) / "server.json").unlink(missing_ok=True)
    if found is None:
        return False
    from ..cluster import _cmdline

    pid = found[0]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _cmdline(pid) is None:  # gone (or a zombie whose parent has not reaped it yet)
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


@app.command("up")
def up(
    port: int = typer.Option(DEFAULT_PORT, help="loopback port of Prometheus' web UI and HTTP API"),
    state_dir: Path = typer.Option(None, help="the cluster's state directory (default ~/.minik)"),
    timeout: float = typer.Option(60.0, help="seconds to wait for every target's first scrape"),
) -> None:
    """Start Prometheus with a scrape job for every component, and wait until each is scraped.

    Example:
      minik prometheus up            # then open http://127.0.0.1:19090
      minik prometheus up --port 9090
    """
    state, cfg = _state(state_dir)
    binary = shutil.which("prometheus")
    if binary is None:
        console.print(
            "[red]prometheus is not installed[/red]: `apt-get install prometheus` (scripts/install.sh does)"
        )
        raise typer.Exit(1)
    from apimachinery.pki import PKI

    from ..cluster import supervisor_pid

    if supervisor_pid(state) is None:
        console.print(f"[red]the cluster in {state} is not running[/red]: `minik up` first")
        raise typer.Exit(1)
    pdir = prometheus_dir(state)
    pdir.mkdir(parents=True, exist_ok=True)
    PKI(state / "pki").client_cert("prometheus", USER, GROUPS)
    config = pdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(cfg, state, _argvs(state), port), sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    if running(state) is not None:
        stop(state)  # a new configuration (or port): start again
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={pdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=2d",
    ]
    (state / "logs").mkdir(exist_ok=True)
    with open(state / "logs" / "prometheus.log", "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (pdir / "server.json").write_text(json.dumps({"pid": proc.pid, "argv": argv, "url": url}))
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    console.print(f"{version.strip()} started (pid {proc.pid}), config {config}")
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    with console.status("waiting for the first scrape of every target…"):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                console.print(
                    f"[red]prometheus exited ({proc.returncode})[/red]; see {state}/logs/prometheus.log"
                )
                raise typer.Exit(1)
            try:
                found = targets(url)
            except (httpx.HTTPError, KeyError, ValueError):
                found = []
            if found and all(t.get("health") == "up" for t in found):
                break
            time.sleep(0.5)
    console.print(targets_table(found))
    up_count = sum(1 for t in found if t.get("health") == "up")
    console.print(f"{up_count}/{len(found)} targets up; Prometheus: {url}  (stop it: minik prometheus down)")
    if not found or up_count < len(found):
        raise typer.Exit(1)


@app.command("down")
def down(
    state_dir: Path = typer.Option(None, help="the cluster's state directory (default ~/.minik)"),
) -> None:
    """Stop the cluster's Prometheus server (its data stays in STATE/prometheus/data)."""
    state, _ = _state(state_dir)
    console.print("prometheus stopped" if stop(state) else "prometheus is not running")


@app.command("status")
def status(
    state_dir: Path = typer.Option(None, help="the cluster's state directory (default ~/.minik)"),
) -> None:
    """Print the Prometheus server's URL and each target's health."""
    state, _ = _state(state_dir)
    found = running(state)
    if found is None:
        console.print("prometheus is not running (`minik prometheus up` starts it)")
        raise typer.Exit(1)
    pid, url = found
    console.print(f"prometheus (pid {pid}): {url}")
    try:
        console.print(targets_table(targets(url)))
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        console.print(f"[red]cannot read its targets: {exc}[/red]")
        raise typer.Exit(1) from None
