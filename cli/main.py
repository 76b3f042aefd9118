"""``minik``: start a local cluster and drive it with kubectl's verbs.

A command's module is imported only when that command runs (or shows its own ``--help``):
``minik get pods`` loads :mod:`cli.commands.get` and what it needs, not the local cluster's
supervisor, Docker's client or every other verb.  :data:`COMMANDS` names each command's module
and carries the one-line help ``minik --help`` lists, so listing the commands imports none of them
(``tests/unit/test_cli_start.py`` checks those lines against the commands' own help).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

import typer
from typer.core import TyperCommand

from .kube import GlobalOptions, KubeGroup


@dataclass(frozen=True)
class Command:
    """Where one ``minik`` command lives, and its line in ``minik --help``."""

    module: str
    attr: str  # the command's function, or the Typer app of a command group
    help: str  # the first paragraph of the command's own help
    kind: Literal["command", "verb", "group"] = "command"
    # verb: a kubectl verb -- the module's EXAMPLES as epilog, options after the arguments allowed


COMMANDS: dict[str, Command] = {
    # the local cluster
    "up": Command(
        "cli.cluster", "up", "Start a local cluster on this host as separate, supervised processes."
    ),
    "down": Command(
        "cli.cluster",
        "down",
        "Stop every process of the local cluster and remove what it made on this host (state is kept).",
    ),
    "status": Command(
        "cli.cluster",
        "status",
        "Show each component: its process, restarts and health (readyz, node Ready, a DNS query, …).",
    ),
    "join": Command(
        "cli.join",
        "join",
        "Join this host to a cluster as a worker node, with a bootstrap token and a pinned CA.",
    ),
    "leave": Command(
        "cli.join",
        "leave",
        "Drain this joined node, delete its Node object, stop its kubelet and proxy and clean the host.",
    ),
    "cluster-logs": Command(
        "cli.cluster",
        "logs",
        "Print a component's log, or with --all export every log, the events and `get -A` output.",
    ),
    # kubectl's verbs
    "apply": Command(
        "cli.commands.apply", "apply", "Apply a configuration to resources from files or stdin.", "verb"
    ),
    "get": Command("cli.commands.get", "get", "Display one or many resources.", "verb"),
    "describe": Command(
        "cli.commands.describe", "describe", "Show details of a resource or group of resources.", "verb"
    ),
    "delete": Command(
        "cli.commands.delete", "delete", "Delete resources by names, files, label selector or --all.", "verb"
    ),
    "edit": Command(
        "cli.commands.edit",
        "edit",
        "Edit a resource in your editor ($KUBE_EDITOR, $EDITOR, else vi).",
        "verb",
    ),
    "scale": Command(
        "cli.commands.scale", "scale", "Set a new size for a Deployment, ReplicaSet or StatefulSet.", "verb"
    ),
    "label": Command("cli.commands.label", "label", "Update the labels on a resource.", "verb"),
    "cordon": Command("cli.commands.drain", "cordon", "Mark a node as unschedulable.", "verb"),
    "uncordon": Command("cli.commands.drain", "uncordon", "Mark a node as schedulable.", "verb"),
    "drain": Command(
        "cli.commands.drain",
        "drain",
        "Drain a node in preparation for maintenance: cordon it, then evict its pods.",
        "verb",
    ),
    "annotate": Command("cli.commands.annotate", "annotate", "Update the annotations on a resource.", "verb"),
    "logs": Command("cli.commands.logs", "logs", "Print the logs of a container in a pod.", "verb"),
    "exec": Command("cli.commands.exec_", "exec_", "Execute a command in a container.", "verb"),
    "port-forward": Command(
        "cli.commands.port_forward", "port_forward", "Forward one or more local ports to a pod.", "verb"
    ),
    "cluster-info": Command(
        "cli.commands.cluster_info",
        "cluster_info",
        "Display the addresses of the control plane and the cluster services.",
        "verb",
    ),
    "api-resources": Command(
        "cli.commands.api_resources",
        "api_resources",
        "Print the supported API resources on the server.",
        "verb",
    ),
    "service": Command(
        "cli.commands.service", "service", "Print the URL(s) of a NodePort or LoadBalancer Service.", "verb"
    ),
    "trace": Command(
        "cli.commands.trace",
        "trace",
        "Show what happened to an object across the components, as a timeline of spans.",
        "verb",
    ),
    "version": Command(
        "cli.commands.version", "version", "Print the client and server version information.", "verb"
    ),
    "top": Command(
        "cli.commands.top", "app", "Display resource (CPU/memory) usage of nodes or pods.", "group"
    ),
    "create": Command("cli.commands.create", "app", "Create a resource from flags.", "group"),
    "set": Command("cli.commands.set_", "app", "Set specific features on objects.", "group"),
    "rollout": Command(
        "cli.commands.rollout",
        "app",
        "Manage the rollout of a Deployment (status, history, undo, restart, pause, resume).",
        "group",
    ),
    "config": Command(
        "cli.commands.config", "app", "Modify kubeconfig files (contexts, current namespace).", "group"
    ),
    "kubeconfig": Command(
        "cli.commands.kubeconfig", "app", "Write kubeconfigs for the local cluster's users.", "group"
    ),
    "prometheus": Command(
        "cli.commands.prometheus",
        "app",
        "A Prometheus server scraping every component of the local cluster.",
        "group",
    ),
    "encryption": Command(
        "cli.commands.encryption",
        "app",
        "Secrets' encryption at rest: show the keys in use, rotate the key.",
        "group",
    ),
    "token": Command("cli.commands.token", "app", "Bootstrap tokens: create, list and delete them.", "group"),
    "etcd": Command(
        "cli.commands.etcd", "app", "The local cluster's etcd: snapshot save and restore.", "group"
    ),
    # lab up|down|status|render, lab node stop|start NAME; image load IMAGE
    "lab": Command(
        "cli.lab",
        "lab_app",
        "A multi-node lab on this Docker host: each node a container with its own Docker engine.",
        "group",
    ),
    "image": Command("cli.lab", "image_app", "Images in the lab's nodes.", "group"),
}


def load_command(name: str) -> Any:
    """The click command ``name`` as typer builds it from the command's function or app."""
    entry = COMMANDS[name]
    module = importlib.import_module(entry.module)
    target = getattr(module, entry.attr)
    holder = typer.Typer()
    if entry.kind == "group":
        holder.add_typer(target, name=name)
    elif entry.kind == "verb":
        holder.command(name, epilog=module.EXAMPLES, context_settings={"allow_interspersed_args": True})(
            target
        )
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


class LazyCommands(MutableMapping[str, Any]):
    """The group's command table: every name of :data:`COMMANDS`, each command built on first access."""

    def __init__(self, added: Mapping[str, Any]) -> None:
        self._built: dict[str, Any] = dict(added)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = load_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(1 for name in self._built if name not in COMMANDS)


class MinikGroup(KubeGroup):
    """The ``minik`` group: the commands of :data:`COMMANDS`, each imported on first use."""

    _listing = False  # set while the group's own help is written

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if self._listing and cmd_name in COMMANDS:
            # `minik --help` lists every command from its line in COMMANDS, importing none
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name].help)
        return self.commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="minik",
    help="minik: a small, real Kubernetes-shaped orchestrator for Docker hosts.",
    no_args_is_help=True,
    cls=MinikGroup,
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


def _without_httpx_cli() -> None:
    """Keep ``import httpx`` from importing httpx's own command-line tool.

    httpx's ``__init__`` imports ``httpx._main`` (click, rich and pygments: about a third of
    ``minik get``'s start-up) whenever those are installed, and falls back to a stub when that
    import fails.  minik never runs httpx's CLI, so the command-line entry point makes that import
    fail; a library user importing :mod:`cli.main` is not affected.
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))


def main() -> None:
    _without_httpx_cli()
    app()


if __name__ == "__main__":
    main()
