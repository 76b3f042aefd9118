"""What every kubectl-like verb of ``minik`` shares.

* :class:`GlobalOptions` — ``--kubeconfig``, ``--context``, ``-n/--namespace``, ``--server``;
  :class:`KubeGroup` lets them appear anywhere on the command line (as kubectl does) and turns
  errors into kubectl's messages with exit code 1, never a traceback.
* :class:`Kube` — the client for one invocation: resolved config, namespace, kinds.
* Output helpers: kubectl's column layout (Go's ``tabwriter`` with kubectl's settings), YAML and
  JSON as kubectl prints them, resource names such as ``deployment.apps/web``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperGroup

from apimachinery import errors
from apimachinery.client import Request, SyncClient, decode_json, decode_watch_line, error_from_response
from apimachinery.kubeconfig import ClientConfig, ConfigError, load_config
from apimachinery.resources import RESOURCES, ResourceInfo, resolve

if TYPE_CHECKING:
    # httpx and yaml are imported where used, so a verb that needs neither starts without them
    import httpx
    import yaml

Obj = dict[str, Any]

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


class CLIError(Exception):
    """A problem with what the user asked for; printed as ``error: <message>``."""


# --------------------------------------------------------------------------------------------------
# Global options and the command group
# --------------------------------------------------------------------------------------------------


@dataclass
class GlobalOptions:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    server: str | None = None
    transport: httpx.BaseTransport | None = None  # tests inject an httpx.MockTransport here
    _kube: Kube | None = field(default=None, repr=False)


_VALUE_OPTIONS = {"--kubeconfig", "--context", "--namespace", "-n", "--server", "-s"}
_NO_HOIST_COMMANDS = {"config"}  # `config set-context --namespace` is that command's own option


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """Move global options found after the verb to the front, so ``get pods -n x`` works.

    Everything after ``--`` (the command of ``exec``) is left alone.
    """
    args = list(args)
    verb = next((a for a in args if not a.startswith("-")), None)
    if verb in _NO_HOIST_COMMANDS:
        return args
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name, eq, _ = arg.partition("=")
        if name in _VALUE_OPTIONS and eq and name.startswith("--"):
            front.append(arg)
        elif arg in _VALUE_OPTIONS and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        elif arg.startswith("-n") and len(arg) > 2 and not arg.startswith("--"):
            front.extend(["-n", arg[2:].lstrip("=")])
        else:
            rest.append(arg)
        i += 1
    return front + rest


class KubeGroup(TyperGroup):
    """The ``minik`` command group: global options anywhere, kubectl-style errors."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except errors.StatusError as exc:
            fail(format_status_error(exc, _server_of(ctx)))
        except (CLIError, ConfigError) as exc:
            fail(f"error: {exc}")
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None


def _server_of(ctx: typer.Context) -> str:
    obj = ctx.find_object(GlobalOptions)
    if obj is not None and obj._kube is not None:
        return obj._kube.config.server
    return ""


def fail(message: str, code: int = 1) -> NoReturn:
    err(message)
    raise typer.Exit(code)


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def format_status_error(exc: errors.StatusError, server: str = "") -> str:
    """An API error as kubectl prints it."""
    import httpx

    cause = exc.__cause__
    if isinstance(cause, httpx.TransportError):
        where = server or "the configured server"
        if isinstance(cause, httpx.TimeoutException):
            return f"error: timed out talking to the API server at {where}"
        return f"error: cannot reach the API server at {where} — is the cluster running? try `minik up`"
    if exc.reason == "Invalid" and (exc.kind or exc.name):
        head = f"The {exc.kind} {json.dumps(exc.name or '')} is invalid: "
        lines = [
            f"{c.get('field')}: {c.get('message')}" if c.get("field") else str(c.get("message"))
            for c in exc.causes
        ]
        if not lines:
            return exc.message
        if len(lines) == 1:
            return head + lines[0]
        return head + "\n" + "\n".join(f"* {line}" for line in lines)
    if exc.reason and exc.reason != "Unknown":
        return f"Error from server ({exc.reason}): {exc.message}"
    return f"Error from server: {exc.message}"


# --------------------------------------------------------------------------------------------------
# The client for one invocation
# --------------------------------------------------------------------------------------------------


class CliClient(SyncClient):
    """:class:`SyncClient` plus requests with a chosen ``Accept`` header and raw streams."""

    def send(self, req: Request) -> Obj:
        return self._send(req)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        accept: str | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> httpx.Response:
        import httpx

        headers: dict[str, str] = {}
        if accept:
            headers["Accept"] = accept
        kwargs: dict[str, Any] = {"params": params or {}, "headers": headers}
        if body is not None:
            kwargs["content"] = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(30.0, read=timeout)
        for attempt in range(len(self.servers)):
            server = self.server
            try:
                resp = self._http.request(method, server + path, **kwargs)
                break
            except httpx.TransportError as exc:
                # the kubeconfig's other API servers (servers.minik.io), as the components do
                if not self._failover(server, Request(method, path), exc) or attempt == len(self.servers) - 1:
                    raise _transport_error(server + path, exc) from exc
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, resp.content, str(resp.request.url))
        return resp

    def get_json(self, path: str, params: dict[str, str] | None = None, accept: str | None = None) -> Obj:
        return decode_json(self.request("GET", path, params, accept=accept))

    def stream_lines(
        self, path: str, params: dict[str, str], accept: str | None = None, read_timeout: float | None = None
    ) -> Iterator[str]:
        """The body of a long GET (a watch, followed logs) line by line, as it arrives."""
        with self._stream(path, params, {"Accept": accept} if accept else {}, read_timeout) as resp:
            yield from resp.iter_lines()

    def stream_bytes(self, path: str, params: dict[str, str]) -> Iterator[bytes]:
        with self._stream(path, params, {}, None) as resp:
            yield from resp.iter_bytes()

    @contextlib.contextmanager
    def _stream(
        self, path: str, params: dict[str, str], headers: dict[str, str], read_timeout: float | None
    ) -> Iterator[httpx.Response]:
        """A streamed GET: API errors raised as such, transport errors as the server's absence."""
        import httpx

        timeout = httpx.Timeout(30.0, read=read_timeout)
        for attempt in range(len(self.servers)):
            url = self.server + path
            stream = self._http.stream("GET", url, params=params, headers=headers, timeout=timeout)
            try:
                resp = stream.__enter__()
            except httpx.TransportError as exc:
                # not connected yet: the next API server, if the kubeconfig names several
                if (
                    not self._failover(self.server, Request("GET", path), exc)
                    or attempt == len(self.servers) - 1
                ):
                    raise _transport_error(url, exc) from exc
                continue
            try:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_from_response(resp.status_code, resp.content, url)
                yield resp
            except httpx.TransportError as exc:  # once streaming, the caller decides
                raise _transport_error(url, exc) from exc
            finally:
                stream.__exit__(None, None, None)
            return

    def watch_table(
        self, path: str, params: dict[str, str], timeout_seconds: int | None = None
    ) -> Iterator[tuple[str, Obj]]:
        """A watch whose events carry one-row Tables (``as=Table``)."""
        params = {**params, "watch": "1"}
        if timeout_seconds:
            params["timeoutSeconds"] = str(timeout_seconds)
        read = None if not timeout_seconds else timeout_seconds + 30.0
        for line in self.stream_lines(path, params, accept=TABLE_ACCEPT, read_timeout=read):
            event = decode_watch_line(line)
            if event is not None:
                yield event


def _transport_error(url: str, exc: Exception) -> errors.StatusError:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return errors.Timeout(f"timed out talking to the API server at {url}")
    return errors.ServiceUnavailable(f"cannot reach the API server at {url}: {exc}")


class Kube:
    """The resolved configuration and client of one ``minik`` invocation."""

    def __init__(self, opts: GlobalOptions) -> None:
        self.opts = opts
        self.config: ClientConfig = load_config(
            opts.kubeconfig, opts.context, server=opts.server, namespace=opts.namespace
        )
        self.client = CliClient(self.config, transport=opts.transport)

    @property
    def namespace(self) -> str:
        return self.config.namespace or "default"

    @property
    def namespace_given(self) -> bool:
        return self.opts.namespace is not None

    def ns_for(self, info: ResourceInfo, obj: Obj | None = None) -> str | None:
        if not info.namespaced:
            return None
        if obj is not None:
            given = (obj.get("metadata") or {}).get("namespace")
            if given:
                return str(given)
        return self.namespace


def kube(ctx: typer.Context) -> Kube:
    """The :class:`Kube` of this invocation (created on first use)."""
    opts = ctx.find_object(GlobalOptions)
    if opts is None:
        opts = ctx.ensure_object(GlobalOptions)
    if opts._kube is None:
        opts._kube = Kube(opts)
    return opts._kube


# --------------------------------------------------------------------------------------------------
# Kinds and names
# --------------------------------------------------------------------------------------------------


def resolve_kind(name: str) -> ResourceInfo:
    """A kind from what the user typed, or an error naming the closest matches."""
    info = resolve(name)
    if info is not None:
        return info
    words: list[str] = []
    for r in RESOURCES:
        words.extend([r.plural, r.singular, *r.short_names])
    close = difflib.get_close_matches(name.lower(), words, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise CLIError(f'the server doesn\'t have a resource type "{name}"{hint}')


def kind_name(info: ResourceInfo) -> str:
    """``deployment.apps`` / ``pod``: how kubectl names a kind in ``kind/name`` output."""
    return f"{info.singular}.{info.group}" if info.group else info.singular


def plural_name(info: ResourceInfo) -> str:
    """``deployments.apps`` / ``pods``: how the server names a resource in messages."""
    return f"{info.plural}.{info.group}" if info.group else info.plural


def ref(info: ResourceInfo, name: str) -> str:
    return f"{kind_name(info)}/{name}"


def category_all() -> list[ResourceInfo]:
    order = ("pods", "services", "daemonsets", "deployments", "replicasets", "statefulsets", "jobs")
    members = [r for r in RESOURCES if "all" in r.categories]
    return sorted(members, key=lambda r: order.index(r.plural) if r.plural in order else len(order))


def parse_resource_args(args: Sequence[str]) -> list[tuple[ResourceInfo, list[str]]]:
    """kubectl's resource arguments: ``pods``, ``pods a b``, ``pod/a svc/b``, ``svc,deploy``, ``all``.

    Returns one entry per kind with the names asked for (empty: every object of the kind).
    """
    if not args:
        raise CLIError("you must specify the type of resource to get")
    out: list[tuple[ResourceInfo, list[str]]] = []
    if any("/" in a for a in args):
        for a in args:
            if "/" not in a:
                raise CLIError(
                    f"there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'minik get resource/<resource_name>' instead of 'minik get resource resource/<resource_name>'): {a}"
                )
            kind, _, name = a.partition("/")
            if not name:
                raise CLIError(f"arguments in resource/name form must have a single resource and name: {a}")
            info = resolve_kind(kind)
            for entry in out:
                if entry[0] == info:
                    entry[1].append(name)
                    break
            else:
                out.append((info, [name]))
        return out
    kinds: list[ResourceInfo] = []
    for word in args[0].split(","):
        if not word:
            continue
        found = category_all() if word == "all" else [resolve_kind(word)]
        kinds.extend(k for k in found if k not in kinds)
    names = list(args[1:])
    if names and len(kinds) > 1:
        raise CLIError("a name may only be given with a single resource type")
    return [(k, list(names)) for k in kinds]


def single_resource(args: Sequence[str], verb: str) -> tuple[ResourceInfo, str]:
    """``deploy/web`` or ``deploy web``: exactly one object."""
    pairs = parse_resource_args(args)
    if len(pairs) != 1 or len(pairs[0][1]) != 1:
        raise CLIError(f"{verb} needs exactly one resource, as TYPE/NAME or TYPE NAME")
    return pairs[0][0], pairs[0][1][0]


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def tabulate(rows: Sequence[Sequence[str]], minwidth: int = 6, padding: int = 3) -> list[str]:
    """Lay rows out as Go's ``tabwriter`` does with kubectl's settings (min width 6, padding 3).

    Each column is as wide as its longest cell plus the padding; the last cell of a row is not
    padded.
    """
    if not rows:
        return []
    ncols = max(len(r) for r in rows)
    widths = [minwidth] * ncols
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell) + padding)
    lines = []
    for r in rows:
        parts = [cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])]
        parts.append(r[-1] if r else "")
        lines.append("".join(parts))
    return lines


@cache
def _dumper() -> type[yaml.SafeDumper]:
    """The YAML dumper of :func:`to_yaml` (made on first use: yaml is not imported before)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        if "\n" in value:
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
        return dumper.represent_scalar("tag:yaml.org,2002:str", value)

    Dumper.add_representer(str, str_representer)
    return Dumper


def to_yaml(obj: Any) -> str:
    """YAML as kubectl prints it: block style, keys sorted, multi-line strings as ``|`` blocks."""
    import yaml

    return yaml.dump(
        obj, Dumper=_dumper(), sort_keys=True, default_flow_style=False, allow_unicode=True, width=1 << 30
    )


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)


def as_list(items: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def with_type(info: ResourceInfo, obj: Obj) -> Obj:
    """List items come without apiVersion/kind; put them back as kubectl does."""
    return {"apiVersion": info.api_version, "kind": info.kind, **obj}


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def examples(*commands: str) -> str:
    """A command's help epilog: "Example:" or "Examples:", then each command as a paragraph."""
    return ("Examples:" if len(commands) > 1 else "Example:") + "".join(f"\n\n  {c}" for c in commands)


def print_text(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def parse_bool(value: str, flag: str) -> bool:
    """kubectl's ``--flag=true|false`` values."""
    lowered = value.lower()
    if lowered in ("true", "1", "t", "yes"):
        return True
    if lowered in ("false", "0", "f", "no"):
        return False
    raise CLIError(f'invalid argument "{value}" for "{flag}" flag: use true or false')
