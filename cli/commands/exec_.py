"""``minik exec POD [-c C] [-i] [-t] -- COMMAND…`` over WebSocket (``v5.channel.k8s.io``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Iterator

import typer

from apimachinery.client import resource_path
from apimachinery.resources import resolve

from ..kube import CLIError, kube, meta
from ..streams import EXEC_PROTOCOLS, exec_params, open_ws, resize_message, run_exec
from .logs import default_container, pick_pod

EXAMPLES = """
Examples:

  minik exec web-0 -- ls /               # run a command
  minik exec -it web-0 -- sh             # an interactive shell
  minik exec deploy/web -c nginx -- nginx -v
"""


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def exec_(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="POD or TYPE/NAME"),
    command: list[str] = typer.Argument(None, help="after --: the command and its arguments"),
    container: str = typer.Option(
        None, "-c", "--container", help="the container (default: the pod's default)"
    ),
    stdin: bool = typer.Option(False, "-i", "--stdin", help="pass stdin to the container"),
    tty: bool = typer.Option(False, "-t", "--tty", help="stdin is a terminal"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="print only the command's output"),
) -> None:
    """Execute a command in a container."""
    if not command:
        raise CLIError("you must specify at least one command for the container")
    k = kube(ctx)
    pod = pick_pod(k, target)
    name = container or default_container(pod, quiet)
    pods = resolve("pods")
    assert pods is not None
    path = resource_path(pods, meta(pod).get("namespace") or k.namespace, str(meta(pod)["name"]), "exec")
    use_tty = tty and stdin and sys.stdin.isatty()
    if tty and not use_tty and not quiet:
        sys.stderr.write("Unable to use a TTY - input is not a terminal or the right kind of file\n")
    ws = open_ws(
        k.config, path, exec_params(command, name, stdin, use_tty), EXEC_PROTOCOLS, first=k.client.server
    )

    def on_open(conn) -> None:  # type: ignore[no-untyped-def]
        if not use_tty:
            return
        size = shutil.get_terminal_size()
        conn.send(resize_message(size.columns, size.lines))
        signal.signal(signal.SIGWINCH, lambda *_: conn.send(resize_message(*os.get_terminal_size())))

    with raw_terminal(use_tty):
        code = run_exec(
            ws, sys.stdin.buffer if stdin else None, sys.stdout.buffer, sys.stderr.buffer, on_open
        )
    if code:
        raise typer.Exit(code)
