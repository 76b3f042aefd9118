"""``minik top nodes|pods``: CPU and memory from the resource metrics API (``metrics.k8s.io``), in
``kubectl top``'s columns.

* ``top nodes [NAME] [-l SELECTOR]``: ``NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)``, the
  percentages of the node's allocatable;
* ``top pods [NAME] [-l SELECTOR] [-A] [--containers]``: ``[NAMESPACE] NAME CPU(cores)
  MEMORY(bytes)``, with ``--containers`` one row per container (``POD NAME ...``).

CPU is shown in millicores (rounded up, as kubectl's ``MilliValue``), memory in ``Mi`` (whole
mebibytes).  ``--sort-by cpu|memory`` sorts from the largest.
"""

from __future__ import annotations

from typing import Any

import typer

from apimachinery import errors
from apimachinery.quantity import parse_quantity, quantity_to_millis

from ..kube import CLIError, examples, kube, out, tabulate

app = typer.Typer(help="Display resource (CPU/memory) usage of nodes or pods.", no_args_is_help=True)

METRICS = "/apis/metrics.k8s.io/v1beta1"
Obj = dict[str, Any]


def cpu_millis(value: Any) -> int:
    return quantity_to_millis(str(value or "0"))


def memory_mib(value: Any) -> int:
    return int(parse_quantity(str(value or "0"))) // (1024 * 1024)


def node_rows(metrics: list[Obj], nodes: dict[str, Obj], sort_by: str = "") -> list[list[str]]:
    rows = []
    for m in metrics:
        name = m["metadata"]["name"]
        usage = m.get("usage") or {}
        cpu, mem = cpu_millis(usage.get("cpu")), int(parse_quantity(str(usage.get("memory") or "0")))
        alloc = ((nodes.get(name) or {}).get("status") or {}).get("allocatable") or {}
        cpu_alloc, mem_alloc = (
            cpu_millis(alloc.get("cpu")),
            int(parse_quantity(str(alloc.get("memory") or "0"))),
        )
        rows.append(
            (
                cpu,
                mem,
                [
                    name,
                    f"{cpu}m",
                    f"{cpu * 100 // cpu_alloc}%" if cpu_alloc else "<unknown>",
                    f"{mem // (1024 * 1024)}Mi",
                    f"{mem * 100 // mem_alloc}%" if mem_alloc else "<unknown>",
                ],
            )
        )
    if sort_by in ("cpu", "memory"):
        rows.sort(key=lambda r: r[0] if sort_by == "cpu" else r[1], reverse=True)
    return [r[2] for r in rows]


def pod_rows(
    metrics: list[Obj], all_namespaces: bool, containers: bool, sort_by: str = ""
) -> list[list[str]]:
    rows = []
    for m in metrics:
        meta = m["metadata"]
        prefix = [str(meta.get("namespace"))] if all_namespaces else []
        cs = m.get("containers") or []
        if containers:
            for c in cs:
                usage = c.get("usage") or {}
                cpu, mem = cpu_millis(usage.get("cpu")), memory_mib(usage.get("memory"))
                rows.append((cpu, mem, [*prefix, meta["name"], c["name"], f"{cpu}m", f"{mem}Mi"]))
        else:
            cpu = sum(cpu_millis((c.get("usage") or {}).get("cpu")) for c in cs)
            mem_bytes = sum(int(parse_quantity(str((c.get("usage") or {}).get("memory") or "0"))) for c in cs)
            mem = mem_bytes // (1024 * 1024)
            rows.append((cpu, mem, [*prefix, meta["name"], f"{cpu}m", f"{mem}Mi"]))
    if sort_by in ("cpu", "memory"):
        rows.sort(key=lambda r: r[0] if sort_by == "cpu" else r[1], reverse=True)
    return [r[2] for r in rows]


def _get(ctx: typer.Context, path: str, selector: str | None) -> Obj:
    k = kube(ctx)
    try:
        return k.client.get_json(path, {"labelSelector": selector} if selector else None)
    except errors.NotFound:
        if "/apis/metrics.k8s.io" in path and path.count("/") <= 5:
            raise CLIError("Metrics API not available") from None
        raise
    except errors.ServiceUnavailable:
        raise CLIError("Metrics API not available") from None


def _check_sort(sort_by: str | None) -> str:
    if sort_by not in (None, "", "cpu", "memory"):
        raise CLIError("--sort-by accepts only cpu or memory")
    return sort_by or ""


@app.command(
    "nodes",
    epilog=examples("minik top nodes", "minik top nodes minik-node-1", "minik top nodes --sort-by cpu"),
)
def top_nodes(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="one node"),
    selector: str = typer.Option(None, "-l", "--selector", help="label selector of the nodes"),
    sort_by: str = typer.Option(None, "--sort-by", help="cpu or memory"),
    no_headers: bool = typer.Option(False, "--no-headers"),
) -> None:
    """Display resource (CPU/memory) usage of nodes."""
    order = _check_sort(sort_by)
    k = kube(ctx)
    if name:
        metrics = [_get(ctx, f"{METRICS}/nodes/{name}", None)]
    else:
        metrics = _get(ctx, f"{METRICS}/nodes", selector).get("items") or []
    if not metrics:
        raise CLIError("metrics not available yet")
    nodes = {n["metadata"]["name"]: n for n in k.client.get_json("/api/v1/nodes").get("items") or []}
    header = [] if no_headers else [["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]]
    for line in tabulate(header + node_rows(metrics, nodes, order)):
        out(line)


@app.command(
    "pods",
    epilog=examples(
        "minik top pods",
        "minik top pods -A",
        "minik top pods web-1 --containers",
        "minik top pods -l app=web",
    ),
)
def top_pods(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="one pod"),
    selector: str = typer.Option(None, "-l", "--selector", help="label selector of the pods"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces", help="pods of every namespace"),
    containers: bool = typer.Option(False, "--containers", help="one row per container"),
    sort_by: str = typer.Option(None, "--sort-by", help="cpu or memory"),
    no_headers: bool = typer.Option(False, "--no-headers"),
) -> None:
    """Display resource (CPU/memory) usage of pods."""
    order = _check_sort(sort_by)
    k = kube(ctx)
    ns = k.namespace
    if name:
        metrics = [_get(ctx, f"{METRICS}/namespaces/{ns}/pods/{name}", None)]
    elif all_namespaces:
        metrics = _get(ctx, f"{METRICS}/pods", selector).get("items") or []
    else:
        metrics = _get(ctx, f"{METRICS}/namespaces/{ns}/pods", selector).get("items") or []
    if not metrics:
        raise CLIError(
            f"No resources found in {ns} namespace." if not all_namespaces else "No resources found"
        )
    head = (["NAMESPACE"] if all_namespaces else []) + (
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
        if containers
        else ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    )
    rows = pod_rows(metrics, all_namespaces, containers, order)
    for line in tabulate(([] if no_headers else [head]) + rows):
        out(line)


# kubectl's other names for the two subcommands
app.command("node", hidden=True)(top_nodes)
app.command("no", hidden=True)(top_nodes)
app.command("pod", hidden=True)(top_pods)
app.command("po", hidden=True)(top_pods)
