"""``minik get``: list or fetch objects, printed as kubectl prints them.

Tables come from the server (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``): the
columns of priority 0, plus priority 1 with ``-o wide``; column names upper-cased.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import typer

from apimachinery import errors
from apimachinery.client import resource_path
from apimachinery.resources import ResourceInfo

from ..kube import (
    TABLE_ACCEPT,
    CLIError,
    Kube,
    Obj,
    as_list,
    err,
    kind_name,
    kube,
    meta,
    out,
    parse_resource_args,
    tabulate,
    to_json,
    to_yaml,
    with_type,
)

EXAMPLES = """
Examples:

  minik get pods                       # pods of the current namespace
  minik get pods -o wide -A            # every namespace, with priority-1 columns
  minik get deploy,svc -l app=web      # several kinds, filtered by label
  minik get all                        # the kinds in category "all"
  minik get deploy web -o yaml         # one object as YAML
  minik get pods -o jsonpath='{.items[*].metadata.name}'
  minik get pods -w                    # print rows as they change
"""

OUTPUTS = ("wide", "yaml", "json", "name")


def parse_output(output: str | None) -> tuple[str, str]:
    """``(format, template)`` from ``-o``; the template is for jsonpath."""
    if not output:
        return "table", ""
    for prefix in ("jsonpath=", "jsonpath-as-json="):
        if output.startswith(prefix):
            return prefix[:-1], output[len(prefix) :]
    if output in OUTPUTS:
        return output, ""
    raise CLIError(
        f'unable to match a printer suitable for the output format "{output}", allowed formats are: '
        "json,jsonpath,name,wide,yaml"
    )


def cell_text(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class TablePrinter:
    """Turns server Tables into kubectl's rows (NAMESPACE column, kind prefix, LABELS)."""

    wide: bool
    all_namespaces: bool
    with_kind: bool
    show_labels: bool
    columns: list[int] = field(default_factory=list)
    name_col: int = 0

    def set_columns(self, table: Obj) -> list[str]:
        defs = table.get("columnDefinitions") or []
        max_priority = 1 if self.wide else 0
        self.columns = [i for i, c in enumerate(defs) if int(c.get("priority") or 0) <= max_priority]
        self.name_col = next((i for i, c in enumerate(defs) if c.get("format") == "name"), 0)
        headers = [str(defs[i].get("name", "")).upper() for i in self.columns]
        if self.all_namespaces:
            headers.insert(0, "NAMESPACE")
        if self.show_labels:
            headers.append("LABELS")
        return headers

    def row(self, info: ResourceInfo, row: Obj) -> list[str]:
        cells = row.get("cells") or []
        md = meta(row.get("object") or {})
        out_cells = []
        for i in self.columns:
            text = cell_text(cells[i] if i < len(cells) else None)
            if i == self.name_col and self.with_kind:
                text = f"{kind_name(info)}/{text}"
            out_cells.append(text)
        if self.all_namespaces:
            out_cells.insert(0, str(md.get("namespace") or ""))
        if self.show_labels:
            from apimachinery.printers import format_labels

            out_cells.append(format_labels(md.get("labels")))
        return out_cells


def _not_found_message(k: Kube, all_namespaces: bool, namespaced: bool) -> str:
    if all_namespaces or not namespaced:
        return "No resources found"
    return f"No resources found in {k.namespace} namespace."


def get(
    ctx: typer.Context,
    resources: list[str] = typer.Argument(None, help="TYPE[,TYPE…] [NAME…] or TYPE/NAME…"),
    output: str = typer.Option(None, "-o", "--output", help="wide|yaml|json|name|jsonpath=TEMPLATE"),
    selector: str = typer.Option(None, "-l", "--selector", help="label selector (a=b,c!=d,e in (f))"),
    field_selector: str = typer.Option(None, "--field-selector", help="field selector (metadata.name=x)"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces", help="list across all namespaces"),
    watch: bool = typer.Option(False, "-w", "--watch", help="after listing, print rows as they change"),
    watch_only: bool = typer.Option(False, "--watch-only", help="print only changes, not the initial list"),
    show_labels: bool = typer.Option(False, "--show-labels", help="add a LABELS column"),
    no_headers: bool = typer.Option(False, "--no-headers", help="omit the header row"),
    ignore_not_found: bool = typer.Option(False, "--ignore-not-found", help="a missing NAME is not an error"),
    request_timeout: int = typer.Option(0, "--request-timeout", help="end a watch after this many seconds"),
    show_managed_fields: bool = typer.Option(
        False,
        "--show-managed-fields",
        help="If true, keep the managedFields when printing objects in JSON or YAML format.",
    ),
) -> None:
    """Display one or many resources."""
    k = kube(ctx)
    fmt, template = parse_output(output)
    pairs = parse_resource_args(resources or [])
    with_kind = (
        len(pairs) > 1 or (resources and resources[0].split(",") != [resources[0]]) or resources[0] == "all"
    )
    any_named = any(names for _, names in pairs)
    failed = False

    if watch or watch_only:
        if len(pairs) != 1:
            raise CLIError("you may only specify a single resource type with --watch")
        info, names = pairs[0]
        if len(names) > 1:
            raise CLIError(
                "watch is only supported on individual resources and resource collections, but 2 resources were found"
            )
        _watch(
            k,
            info,
            names[0] if names else None,
            fmt,
            template,
            selector,
            field_selector,
            all_namespaces,
            show_labels,
            no_headers,
            watch_only,
            request_timeout,
            show_managed_fields,
        )
        return

    if fmt in ("table", "wide"):
        printer = TablePrinter(fmt == "wide", all_namespaces, bool(with_kind), show_labels)
        first = True
        printed_any = False
        for info, names in pairs:
            tables: list[Obj] = []
            if names:
                for name in names:
                    try:
                        tables.append(
                            k.client.get_json(
                                resource_path(info, _ns(k, info, all_namespaces), name), accept=TABLE_ACCEPT
                            )
                        )
                    except errors.NotFound as exc:
                        if not ignore_not_found:
                            err(f"Error from server (NotFound): {exc.message}")
                            failed = True
            else:
                params = _selectors(selector, field_selector)
                tables.append(
                    k.client.get_json(
                        resource_path(info, _ns(k, info, all_namespaces)), params, accept=TABLE_ACCEPT
                    )
                )
            rows = [r for t in tables for r in (t.get("rows") or [])]
            if not rows:
                continue
            lines: list[list[str]] = []
            headers = printer.set_columns(tables[0])
            if not no_headers:
                lines.append(headers)
            lines.extend(printer.row(info, r) for r in rows)
            if not first:
                out()
            first = False
            for line in tabulate(lines):
                out(line)
            printed_any = True
        if not printed_any and not any_named:
            err(_not_found_message(k, all_namespaces, any(i.namespaced for i, _ in pairs)))
        if failed:
            raise typer.Exit(1)
        return

    objects: list[Obj] = []
    for info, names in pairs:
        if names:
            for name in names:
                try:
                    objects.append(with_type(info, k.client.get(info, name, _ns(k, info, all_namespaces))))
                except errors.NotFound as exc:
                    if not ignore_not_found:
                        err(f"Error from server (NotFound): {exc.message}")
                        failed = True
        else:
            lst = k.client.list(info, _ns(k, info, all_namespaces), selector, field_selector)
            objects.extend(with_type(info, o) for o in lst.get("items") or [])
    single = any_named and len(pairs) == 1 and len(pairs[0][1]) == 1
    if not objects and not any_named and fmt == "name":
        err(_not_found_message(k, all_namespaces, any(i.namespaced for i, _ in pairs)))
    print_objects(objects, fmt, template, single and len(objects) == 1, show_managed_fields)
    if failed:
        raise typer.Exit(1)


def _ns(k: Kube, info: ResourceInfo, all_namespaces: bool) -> str | None:
    if not info.namespaced or all_namespaces:
        return None
    return k.namespace


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def object_name(obj: Obj) -> str:
    from apimachinery.resources import by_kind

    info = by_kind(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))
    kind = kind_name(info) if info else str(obj.get("kind") or "").lower()
    return f"{kind}/{meta(obj).get('name')}"


def omit_managed_fields(obj: Obj) -> Obj:
    """``obj`` without ``metadata.managedFields`` (a shallow copy; the object itself is untouched),
    as kubectl prints objects unless ``--show-managed-fields``."""
    md = obj.get("metadata")
    if not isinstance(md, dict) or "managedFields" not in md:
        return obj
    return {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}


def print_objects(
    objects: list[Obj], fmt: str, template: str = "", single: bool = False, show_managed_fields: bool = False
) -> None:
    """Print objects as yaml, json, name or jsonpath (a List unless exactly one was asked for).

    YAML and JSON leave out ``metadata.managedFields`` unless ``show_managed_fields``."""
    if fmt == "name":
        for o in objects:
            out(object_name(o))
        return
    if fmt in ("yaml", "json") and not show_managed_fields:
        objects = [omit_managed_fields(o) for o in objects]
    data: Obj = objects[0] if single else as_list(objects)
    if fmt == "yaml":
        print_text(to_yaml(data))
    elif fmt == "json":
        out(to_json(data))
    elif fmt == "jsonpath":
        from .. import jsonpath

        try:
            print_text(jsonpath.render(template, data))
        except jsonpath.JSONPathError as exc:
            raise CLIError(f"error executing jsonpath {template!r}: {exc}") from exc
    elif fmt == "jsonpath-as-json":
        raise CLIError("jsonpath-as-json is not supported; use -o json")


def print_text(text: str) -> None:
    import sys

    sys.stdout.write(text)
    sys.stdout.flush()


def _watch(
    k: Kube,
    info: ResourceInfo,
    name: str | None,
    fmt: str,
    template: str,
    selector: str | None,
    field_selector: str | None,
    all_namespaces: bool,
    show_labels: bool,
    no_headers: bool,
    watch_only: bool,
    timeout: int,
    show_managed_fields: bool = False,
) -> None:
    ns = _ns(k, info, all_namespaces)
    fields = [f for f in (field_selector, f"metadata.name={name}" if name else None) if f]
    params = _selectors(selector, ",".join(fields) or None)
    path = resource_path(info, ns)
    if fmt in ("table", "wide"):
        printer = TablePrinter(fmt == "wide", all_namespaces, False, show_labels)
        table = k.client.get_json(path, params, accept=TABLE_ACCEPT)
        headers = printer.set_columns(table)
        rows = table.get("rows") or []
        header_printed = False
        if not watch_only:
            lines = ([] if no_headers else [headers]) + [printer.row(info, r) for r in rows]
            if rows:
                header_printed = True
                for line in tabulate(lines):
                    out(line)
            else:
                err(_not_found_message(k, all_namespaces, info.namespaced))
        rv = str(meta(table).get("resourceVersion") or "")
        for etype, obj in k.client.watch_table(path, {**params, "resourceVersion": rv}, timeout or None):
            if etype == "BOOKMARK" or obj.get("kind") != "Table":
                continue
            if obj.get("columnDefinitions"):
                headers = printer.set_columns(obj)
            lines = [printer.row(info, r) for r in obj.get("rows") or []]
            if not header_printed and not no_headers:
                lines.insert(0, headers)
                header_printed = True
            for line in tabulate(lines):
                out(line)
        return
    lst = k.client.list(info, ns, selector, ",".join(fields) or None)
    if not watch_only:
        for item in lst.get("items") or []:
            _print_watched(with_type(info, item), fmt, template, show_managed_fields)
    rv = str(meta(lst).get("resourceVersion") or "")
    for etype, obj in k.client.watch(info, ns, rv, selector, ",".join(fields) or None, timeout or None):
        if etype != "BOOKMARK":
            _print_watched(with_type(info, obj), fmt, template, show_managed_fields)


def _print_watched(obj: Obj, fmt: str, template: str, show_managed_fields: bool = False) -> None:
    if fmt == "yaml":
        print_text("---\n" + to_yaml(obj if show_managed_fields else omit_managed_fields(obj)))
    else:
        print_objects([obj], fmt, template, single=True, show_managed_fields=show_managed_fields)
        if fmt == "jsonpath":
            out()
