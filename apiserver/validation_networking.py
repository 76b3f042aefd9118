"""Validation of networking.k8s.io kinds beyond what :mod:`apiserver.validation` checks of an
Ingress's rules and backends: the Ingress's ``spec.tls`` (hosts, Secret names) and IngressClass
(controller, parameters; the controller immutable), in Kubernetes' words
(pkg/apis/networking/validation).  Hooked into ``validation._VALIDATORS``.
"""

from __future__ import annotations

import re
from typing import Any

from apimachinery.selectors import is_dns1123_subdomain

from .validation import Cause, _d, _dl, forbidden, invalid, not_supported, required, too_long

Obj = dict[str, Any]

MAX_CONTROLLER = 250
_WILDCARD_FMT = r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_WILDCARD = re.compile("^" + _WILDCARD_FMT + "$")
_HTTP_PATH_FMT = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
_HTTP_PATH = re.compile("^" + _HTTP_PATH_FMT + "$")


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _WILDCARD.match(value):
        errs.append(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
            "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
            f"alphanumeric character (e.g. '*.example.com', regex used for validation is '{_WILDCARD_FMT}')"
        )
    return errs


def host_errors(host: str) -> list[str]:
    """A host of a rule or a TLS entry: a DNS-1123 subdomain, or a wildcard one (``*.example.com``)."""
    return is_wildcard_dns1123_subdomain(host) if "*" in host else is_dns1123_subdomain(host)


def validate_ingress_tls(spec: Obj) -> list[Cause]:
    errs: list[Cause] = []
    for i, tls in enumerate(_dl(spec.get("tls"))):
        for j, host in enumerate(tls.get("hosts") or []):
            errs.extend(invalid(f"spec.tls[{i}].hosts[{j}]", host, m) for m in host_errors(str(host)))
        name = tls.get("secretName")
        if name:
            errs.extend(
                invalid(f"spec.tls[{i}].secretName", name, m) for m in is_dns1123_subdomain(str(name))
            )
    return errs


def is_domain_prefixed_path(path: str, value: str) -> list[Cause]:
    if not value:
        return [required(path)]
    host, sep, rest = value.partition("/")
    if not sep or not host or not rest:
        return [invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [invalid(path, host, m) for m in is_dns1123_subdomain(host)]
    if not _HTTP_PATH.match(rest):
        errs.append(invalid(path, rest, f"Invalid path (regex used for validation is '{_HTTP_PATH_FMT}')"))
    return errs


def validate_ingress_class(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    controller = str(spec.get("controller") or "")
    if len(controller) > MAX_CONTROLLER:
        errs.append(too_long("spec.controller", MAX_CONTROLLER))
    errs += is_domain_prefixed_path("spec.controller", controller)
    params = spec.get("parameters")
    if params is None:
        return errs
    params = _d(params)
    p = "spec.parameters"
    group = params.get("apiGroup")
    if group is not None:
        errs.extend(invalid(f"{p}.apiGroup", group, m) for m in is_dns1123_subdomain(str(group)))
    if not params.get("kind"):
        errs.append(required(f"{p}.kind", "kind is required"))
    if not params.get("name"):
        errs.append(required(f"{p}.name", "name is required"))
    scope, namespace = params.get("scope") or "Cluster", params.get("namespace")  # Kubernetes' default
    if scope not in ("Cluster", "Namespace"):
        errs.append(not_supported(f"{p}.scope", scope, ["Cluster", "Namespace"]))
    elif scope == "Namespace" and not namespace:
        errs.append(required(f"{p}.namespace", "`parameters.scope` is set to 'Namespace'"))
    elif scope == "Cluster" and namespace is not None:
        errs.append(forbidden(f"{p}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return errs


def validate_ingress_class_update(obj: Obj, old: Obj) -> list[Cause]:
    new_controller = _d(obj.get("spec")).get("controller")
    if new_controller != _d(old.get("spec")).get("controller"):
        return [invalid("spec.controller", new_controller, "field is immutable")]
    return []
