"""``minik``: start a local cluster and drive it with kubectl's verbs."""

from __future__ import annotations

from typing import Any

import typer

from . import cluster, lab
from .commands import (
    annotate,
    api_resources,
    apply,
    cluster_info,
    config,
    create,
    delete,
    describe,
    edit,
    exec_,
    get,
    label,
    logs,
    port_forward,
    rollout,
    scale,
    service,
    set_,
)
from .kube import GlobalOptions, KubeGroup

app = typer.Typer(
    name="minik",
    help="minik: a small, real Kubernetes-shaped orchestrator for Docker hosts.",
    no_args_is_help=True,
    cls=KubeGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@app.callback()
def _globals(
    ctx: typer.Context,
    kubeconfig: str = typer.Option(
        None, "--kubeconfig", help="kubeconfig file (default $KUBECONFIG or ~/.kube/config)"
    ),
    context: str = typer.Option(None, "--context", help="the kubeconfig context to use"),
    namespace: str = typer.Option(None, "-n", "--namespace", help="namespace for this request"),
    server: str = typer.Option(
        None, "-s", "--server", help="the API server's URL (overrides the kubeconfig)"
    ),
) -> None:
    """minik: a small, real Kubernetes-shaped orchestrator for Docker hosts.

    `minik up` starts a local cluster; the other verbs drive any Kubernetes-shaped API as kubectl
    does. Global options (--kubeconfig, --context, -n, --server) may appear anywhere.
    """
    opts = ctx.ensure_object(GlobalOptions)
    opts.kubeconfig = kubeconfig if kubeconfig is not None else opts.kubeconfig
    opts.context = context if context is not None else opts.context
    opts.namespace = namespace if namespace is not None else opts.namespace
    opts.server = server if server is not None else opts.server


# the local cluster
app.command()(cluster.up)
app.command()(cluster.down)
app.command()(cluster.status)
app.command("cluster-logs")(cluster.logs)

# kubectl's verbs
_VERBS: list[tuple[str, Any, str]] = [
    ("apply", apply.apply, apply.EXAMPLES),
    ("get", get.get, get.EXAMPLES),
    ("describe", describe.describe, describe.EXAMPLES),
    ("delete", delete.delete, delete.EXAMPLES),
    ("edit", edit.edit, edit.EXAMPLES),
    ("scale", scale.scale, scale.EXAMPLES),
    ("label", label.label, label.EXAMPLES),
    ("annotate", annotate.annotate, annotate.EXAMPLES),
    ("logs", logs.logs, logs.EXAMPLES),
    ("exec", exec_.exec_, exec_.EXAMPLES),
    ("port-forward", port_forward.port_forward, port_forward.EXAMPLES),
    ("cluster-info", cluster_info.cluster_info, cluster_info.EXAMPLES),
    ("api-resources", api_resources.api_resources, api_resources.EXAMPLES),
    ("service", service.service, service.EXAMPLES),
]
for _name, _fn, _examples in _VERBS:
    app.command(_name, epilog=_examples, context_settings={"allow_interspersed_args": True})(_fn)

app.add_typer(create.app, name="create")
app.add_typer(set_.app, name="set")
app.add_typer(rollout.app, name="rollout")
app.add_typer(config.app, name="config")
app.add_typer(lab.lab_app, name="lab")  # lab up|down|status|render, lab node stop|start NAME
app.add_typer(lab.image_app, name="image")  # image load IMAGE


def main() -> None:
    app()


if __name__ == "__main__":
    main()
