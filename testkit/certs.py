"""The identities of a test session: one cluster CA (``apimachinery.pki.PKI`` in a temporary
directory, removed at exit) and the certificates every test cluster's processes present.

Certificates are made once per session and shared by every API server and component the session
starts: a client certificate names a user, not a server, so the scheduler of one test's cluster
is the same ``system:kube-scheduler`` as the next one's.  Serving certificates depend on the
addresses a server is reached at and are made per server (:func:`serving_cert`).

Identities, as Kubernetes names them (``IDENTITIES``):

* ``admin``: ``kubernetes-admin`` in ``system:masters`` (what tests and ``kubectl`` use);
* ``scheduler``, ``controller-manager``, ``proxy``, ``dns``, ``ingress``: ``system:kube-scheduler``,
  ``system:kube-controller-manager``, ``system:kube-proxy``, ``system:minik-dns``,
  ``system:minik-ingress``;
* ``apiserver-kubelet-client``: the API server's certificate towards kubelets (``system:masters``);
* ``hollow``: the hollow-node process, which plays many kubelets with one connection and so
  cannot be one ``system:node:NAME``: ``minik-hollow-nodes`` in ``system:masters``;
* a kubelet: ``system:node:NODE`` in ``system:nodes`` (:func:`node_client_cert`).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import ssl
import tempfile
from pathlib import Path

from apimachinery.pki import PKI

IDENTITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "scheduler": ("system:kube-scheduler", ()),
    "controller-manager": ("system:kube-controller-manager", ()),
    "proxy": ("system:kube-proxy", ()),
    "dns": ("system:minik-dns", ()),
    "ingress": ("system:minik-ingress", ()),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
    "hollow": ("minik-hollow-nodes", ("system:masters",)),
}


@functools.cache
def session_pki() -> PKI:
    """The session's PKI: a CA and the service-account signing keys, in a directory removed at exit."""
    directory = Path(tempfile.mkdtemp(prefix="minik-pki-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    pki = PKI(directory / "pki")
    pki.ensure_ca("minik-test-ca")
    pki.service_account_keys()
    return pki


@functools.cache
def client_cert(name: str) -> tuple[Path, Path]:
    """The certificate and key of a well-known identity of ``IDENTITIES``."""
    user, groups = IDENTITIES[name]
    return session_pki().client_cert(name, user, groups)


@functools.cache
def user_cert(user: str, groups: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A client certificate for any user (CN ``user``, O ``groups``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
    suffix = "-".join("".join(c if c.isalnum() else "_" for c in g) for g in groups)
    return session_pki().client_cert(f"user-{safe}{'-' + suffix if suffix else ''}", user, groups)


@functools.cache
def node_client_cert(node: str) -> tuple[Path, Path]:
    """A kubelet's client certificate: ``system:node:NODE`` in ``system:nodes``."""
    return session_pki().client_cert(f"kubelet-{node}-client", f"system:node:{node}", ("system:nodes",))


def serving_cert(name: str, hosts: list[str] | tuple[str, ...]) -> tuple[Path, Path]:
    """A serving certificate for ``hosts`` (IP addresses and DNS names), signed by the session CA."""
    return session_pki().serving_cert(name, list(dict.fromkeys(hosts)))


def ca_file() -> Path:
    return session_pki().ca_cert


def ssl_context(cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """A client context that trusts the session CA and presents ``cert`` (admin unless given)."""
    ctx = ssl.create_default_context(cafile=str(ca_file()))
    crt, key = cert or client_cert("admin")
    ctx.load_cert_chain(str(crt), str(key))
    return ctx
