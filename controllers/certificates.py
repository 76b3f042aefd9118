"""The CertificateSigningRequest controllers: ``csrapproving`` and ``csrsigning``, as Kubernetes'.

``csrapproving`` approves kubelet client CSRs: signer ``kubernetes.io/kube-apiserver-client-kubelet``,
subject ``O=system:nodes, CN=system:node:NAME``, usages digital signature + client auth (key
encipherment allowed), no SANs -- when the requestor may ``create`` ``certificatesigningrequests``
with subresource ``selfnodeclient`` (the CSR's CN is the requestor's own name: a node renewing) or
``nodeclient`` (a bootstrapper), asked through a SubjectAccessReview for the CSR's
``spec.username/uid/groups/extra`` as Kubernetes' ``sarApprover`` does.  It sets condition
``Approved`` (reason ``AutoApproved``) through ``/approval``.

Kubelet serving CSRs (signer ``kubernetes.io/kubelet-serving``) Kubernetes never approves by itself:
clusters run an approver such as kubelet-csr-approver, or an administrator runs ``kubectl
certificate approve``.  A node writes its own Node ``status.addresses``, so they prove nothing;
minik's csrapproving approves a serving CSR only when all of this holds, else it leaves it pending
for an administrator (logged with the reason, and a Warning Event ``NotAutoApproved``):

* the requestor is ``system:node:NAME`` in ``system:nodes``, the CN that same name, O
  ``system:nodes``, the usages a serving certificate's, at least one DNS or IP SAN, no other SANs;
* every DNS SAN is exactly NAME, and none is ``kubernetes``, ``kubernetes.*``, ``localhost``,
  ``*.localhost``, ``*.svc`` or ``*.svc.*`` (so ``*.svc.CLUSTER_DOMAIN``) -- even for a node so named;
* every IP SAN is an InternalIP/ExternalIP of the node, inside ``--kubelet-serving-ip-prefixes``
  (default none: no IP address is approved), and not loopback, link-local, unspecified,
  multicast or IPv4-mapped, not in ``--service-cluster-ip-range`` (default 10.96.0.0/12) or
  ``--cluster-cidr``, not an address of the ``default/kubernetes`` Endpoints (the API server) and
  not an address any other Node lists.

Any other CSR is left alone.

``csrsigning`` signs approved CSRs of ``kubernetes.io/kube-apiserver-client-kubelet``,
``kubernetes.io/kubelet-serving`` and ``kubernetes.io/kube-apiserver-client`` with the cluster CA
(``--cluster-signing-cert-file``/``--cluster-signing-key-file``), valid for
``spec.expirationSeconds`` capped by ``--cluster-signing-duration`` (at least 10 minutes), and writes
``status.certificate`` through ``/status``.  A request its signer's rules refuse gets condition
``Failed`` (reason ``SignerValidationFailure``) and is not signed.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apimachinery import errors
from apimachinery.client import Obj, update_request
from apimachinery.events import WARNING
from apimachinery.resources import kind_info

from .base import Controller, ControllerContext
from .util import deep_copy, name_of

log = logging.getLogger(__name__)


CSRS = kind_info("certificates.k8s.io/v1", "CertificateSigningRequest")
SUBJECT_ACCESS_REVIEWS = kind_info("authorization.k8s.io/v1", "SubjectAccessReview")
NODES = kind_info("v1", "Node")
ENDPOINTS = kind_info("v1", "Endpoints")
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"  # the API server's --service-cluster-ip-range default
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BACKDATE = dt.timedelta(minutes=5)
MIN_DURATION = dt.timedelta(minutes=10)

KUBELET_CLIENT_USAGES = (
    frozenset({"digital signature", "key encipherment", "client auth"}),
    frozenset({"digital signature", "client auth"}),
)
KUBELET_SERVING_USAGES = (
    frozenset({"digital signature", "key encipherment", "server auth"}),
    frozenset({"digital signature", "server auth"}),
)
APISERVER_CLIENT_USAGES = frozenset({"digital signature", "key encipherment", "client auth"})

SELF_MESSAGE = "Auto approving self kubelet client certificate after SubjectAccessReview."
NODE_MESSAGE = "Auto approving kubelet client certificate after SubjectAccessReview."
SERVING_MESSAGE = (
    "Auto approving kubelet serving certificate: it names only the requesting node's name and its own"
    " addresses inside --kubelet-serving-ip-prefixes."
)
NODE_IP_ADDRESSES = ("InternalIP", "ExternalIP")


# ---- the CSR --------------------------------------------------------------------------------------


def parse_request(csr: Mapping[str, Any]) -> x509.CertificateSigningRequest:
    """The PEM ``CERTIFICATE REQUEST`` of ``spec.request`` (base64 in the API); ValueError if not one."""
    raw = base64.b64decode(str((csr.get("spec") or {}).get("request") or ""), validate=False)
    return x509.load_pem_x509_csr(raw)


def conditions(csr: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("type")): c for c in (csr.get("status") or {}).get("conditions") or []}


def is_approved(csr: Mapping[str, Any]) -> bool:
    """Approved and not Denied (Kubernetes' ``IsCertificateRequestApproved``)."""
    conds = conditions(csr)
    return "Approved" in conds and "Denied" not in conds


def _subject(req: x509.CertificateSigningRequest) -> tuple[list[str], list[str]]:
    cns = [str(a.value) for a in req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return cns, orgs


def _sans(req: x509.CertificateSigningRequest) -> tuple[list[str], list[Any], list[str], list[str]]:
    try:
        ext = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    return (
        list(ext.get_values_for_type(x509.DNSName)),
        list(ext.get_values_for_type(x509.IPAddress)),
        list(ext.get_values_for_type(x509.RFC822Name)),
        list(ext.get_values_for_type(x509.UniformResourceIdentifier)),
    )


def kubelet_client_problem(req: x509.CertificateSigningRequest, usages: Iterable[str]) -> str | None:
    """Why ``req`` is not a kubelet client certificate request (``ValidateKubeletClientCSR``); None if it is."""
    cns, orgs = _subject(req)
    if orgs != [NODES_GROUP]:
        return f"subject organization is not {NODES_GROUP}"
    dns, ips, emails, uris = _sans(req)
    if dns or ips or emails or uris:
        return "subject alternative names are not allowed"
    if len(cns) != 1 or not cns[0].startswith(NODE_PREFIX):
        return f'subject common name does not begin with "{NODE_PREFIX}"'
    if frozenset(usages) not in KUBELET_CLIENT_USAGES:
        return "usages must be digital signature and client auth, optionally key encipherment"
    return None


def kubelet_serving_problem(req: x509.CertificateSigningRequest, usages: Iterable[str]) -> str | None:
    """Why ``req`` is not a kubelet serving certificate request (``ValidateKubeletServingCSR``)."""
    cns, orgs = _subject(req)
    if orgs != [NODES_GROUP]:
        return f"subject organization is not {NODES_GROUP}"
    dns, ips, emails, uris = _sans(req)
    if emails or uris:
        return "email and URI subject alternative names are not allowed"
    if not dns and not ips:
        return "DNS or IP subject alternative name is required"
    if len(cns) != 1 or not cns[0].startswith(NODE_PREFIX):
        return f'subject common name does not begin with "{NODE_PREFIX}"'
    if frozenset(usages) not in KUBELET_SERVING_USAGES:
        return "usages must be digital signature and server auth, optionally key encipherment"
    return None


def apiserver_client_problem(req: x509.CertificateSigningRequest, usages: Iterable[str]) -> str | None:
    if not set(usages) <= APISERVER_CLIENT_USAGES or "client auth" not in set(usages):
        return "usages must include client auth and only digital signature and key encipherment besides"
    return None


SIGNER_RULES = {
    KUBELET_CLIENT_SIGNER: kubelet_client_problem,
    KUBELET_SERVING_SIGNER: kubelet_serving_problem,
    APISERVER_CLIENT_SIGNER: apiserver_client_problem,
}


def approval_permission(csr: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (subresource, message) permissions to check, in Kubernetes' order, for an auto-approvable
    kubelet client CSR: ``selfnodeclient`` when its CN is the requestor's user name, then
    ``nodeclient``; [] when it is not one (wrong signer, subject, usages or SANs)."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_CLIENT_SIGNER:
        return []
    try:
        req = parse_request(csr)
    except ValueError:
        return []
    if kubelet_client_problem(req, [str(u) for u in spec.get("usages") or []]) is not None:
        return []
    cns, _ = _subject(req)
    found: list[tuple[str, str]] = []
    if cns and spec.get("username") == cns[0]:
        found.append(("selfnodeclient", SELF_MESSAGE))
    found.append(("nodeclient", NODE_MESSAGE))
    return found


def serving_node(csr: Mapping[str, Any]) -> str | None:
    """The node a kubelet serving CSR is for when it could be approved (signer, subject, usages and
    requestor fit); None when it is not one, or another user asks for a node's certificate."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_SERVING_SIGNER:
        return None
    try:
        req = parse_request(csr)
    except ValueError:
        return None
    if kubelet_serving_problem(req, [str(u) for u in spec.get("usages") or []]) is not None:
        return None
    cns, _ = _subject(req)
    username = str(spec.get("username") or "")
    if username != cns[0] or NODES_GROUP not in (spec.get("groups") or []):
        return None
    return username[len(NODE_PREFIX) :] or None


RESERVED_NAMES = ("kubernetes", "localhost")


def reserved_name_problem(name: str) -> str | None:
    """Why a DNS name is never auto-approved: ``kubernetes``, ``kubernetes.*``, ``localhost``,
    ``*.localhost``, ``*.svc`` and ``*.svc.*`` (so ``*.svc.CLUSTER_DOMAIN``) name the API server,
    Services or the local host."""
    n = name.lower().rstrip(".")
    labels = n.split(".")
    if labels[0] in RESERVED_NAMES or labels[-1] == "localhost" or "svc" in labels[1:]:
        return f"DNS name {name!r} names the API server, a Service or the local host"
    return None


@dataclass(frozen=True)
class ServingPolicy:
    """What csrapproving lets a kubelet serving certificate name.  ``ip_prefixes``
    (``--kubelet-serving-ip-prefixes``): the networks node IP addresses may be in; none, no IP
    address is approved.  Never approved: addresses in ``service_cidrs``
    (``--service-cluster-ip-range``) or ``cluster_cidrs`` (``--cluster-cidr``)."""

    ip_prefixes: tuple[IPNetwork, ...] = ()
    service_cidrs: tuple[IPNetwork, ...] = ()
    cluster_cidrs: tuple[IPNetwork, ...] = ()


def parse_prefixes(value: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """Comma-separated (or listed) CIDRs; ValueError on a bad one."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in items if v and v.strip())


def _node_ips(node: Mapping[str, Any]) -> set[str]:
    addresses = (node.get("status") or {}).get("addresses") or []
    return {str(a.get("address")) for a in addresses if a.get("type") in NODE_IP_ADDRESSES}


def serving_sans_problem(
    csr: Mapping[str, Any],
    node: Mapping[str, Any],
    policy: ServingPolicy | None = None,
    *,
    other_nodes: Iterable[Mapping[str, Any]] = (),
    apiserver_ips: Iterable[str] = (),
) -> str | None:
    """Why the serving CSR of ``node`` is not auto-approved; None when every DNS name is the node's
    own name (and no reserved one) and every IP address is one of the node's InternalIP/ExternalIP
    addresses, inside ``policy.ip_prefixes`` and not loopback, link-local, unspecified, multicast
    or IPv4-mapped, in the service or cluster CIDR, an address of the API server (``apiserver_ips``: the
    ``default/kubernetes`` Endpoints) or of any of ``other_nodes``."""
    policy = policy or ServingPolicy()
    req = parse_request(csr)
    dns, ips, _, _ = _sans(req)
    name = str((node.get("metadata") or {}).get("name") or "")
    for d in dns:
        problem = reserved_name_problem(d)
        if problem:
            return problem
    foreign_dns = [d for d in dns if d != name]
    if foreign_dns:
        return f"DNS names {foreign_dns} are not the node's name {name!r}"
    own = _node_ips(node)
    api = {str(ipaddress.ip_address(a)) for a in apiserver_ips}
    others: dict[str, list[str]] = {}
    for other in other_nodes:
        other_name = str((other.get("metadata") or {}).get("name") or "")
        if other_name != name:
            for a in _node_ips(other):
                others.setdefault(a, []).append(other_name)
    for ip in ips:
        text = str(ip)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return f"IP address {text} is an IPv4-mapped IPv6 address"
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            return f"IP address {text} is loopback, link-local, unspecified or multicast"
        for what, nets in (("service", policy.service_cidrs), ("cluster", policy.cluster_cidrs)):
            if any(ip.version == n.version and ip in n for n in nets):
                return f"IP address {text} is in the {what} CIDR"
        if text in api:
            return f"IP address {text} is the API server's (default/kubernetes Endpoints)"
        if text in others:
            return f"IP address {text} is an address of node(s) {sorted(others[text])}"
        if text not in own:
            return f"IP addresses [{text!r}] are not among the node's addresses {sorted(own)}"
        if not any(ip.version == n.version and ip in n for n in policy.ip_prefixes):
            prefixes = [str(n) for n in policy.ip_prefixes]
            return f"IP address {text} is not in --kubelet-serving-ip-prefixes {prefixes}"
    return None


def access_review(csr: Mapping[str, Any], subresource: str) -> Obj:
    """The SubjectAccessReview asking whether the CSR's requestor may create the subresource."""
    spec = csr.get("spec") or {}
    review_spec: dict[str, Any] = {
        "user": spec.get("username") or "",
        "groups": list(spec.get("groups") or []),
        "resourceAttributes": {
            "group": "certificates.k8s.io",
            "resource": "certificatesigningrequests",
            "verb": "create",
            "subresource": subresource,
        },
    }
    if spec.get("uid"):
        review_spec["uid"] = spec["uid"]
    if spec.get("extra"):
        review_spec["extra"] = spec["extra"]
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": review_spec}


def with_condition(csr: Obj, type_: str, reason: str, message: str, now: dt.datetime) -> Obj:
    stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = deep_copy(csr)
    status = new.setdefault("status", {})
    status["conditions"] = [
        *(status.get("conditions") or []),
        {
            "type": type_,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
        },
    ]
    return new


# ---- signing --------------------------------------------------------------------------------------

_USAGE_EKU = {
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}
_USAGE_KU = {
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "data encipherment": "data_encipherment",
    "key agreement": "key_agreement",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}


def duration(max_ttl: dt.timedelta, expiration_seconds: int | None) -> dt.timedelta:
    """``spec.expirationSeconds`` capped by the signer's TTL and at least 10 minutes (Kubernetes')."""
    if expiration_seconds is None:
        return max_ttl
    wanted = dt.timedelta(seconds=int(expiration_seconds))
    return max_ttl if wanted > max_ttl else max(wanted, MIN_DURATION)


def sign_request(
    req: x509.CertificateSigningRequest,
    usages: Iterable[str],
    ca_cert: x509.Certificate,
    ca_key: Any,
    ttl: dt.timedelta,
    now: dt.datetime,
) -> bytes:
    """The PEM certificate the CA issues for ``req``: its subject and SANs, the usages asked for,
    valid from a little before ``now`` for ``ttl`` but never past the CA's own expiry."""
    usages = set(usages)
    flags = {attr: (name in usages) for name, attr in _USAGE_KU.items()}
    not_after = min(now + ttl, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(ca_cert.subject)
        .public_key(req.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**flags), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    ekus = [oid for name, oid in _USAGE_EKU.items() if name in usages]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    try:
        sans = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        builder = builder.add_extension(sans, critical=False)
    except x509.ExtensionNotFound:
        pass
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(ca_key, algorithm)
    return cert.public_bytes(serialization.Encoding.PEM)


def load_signing_pair(cert_file: str, key_file: str) -> tuple[x509.Certificate, Any]:
    """The CA certificate and key the signer uses; ValueError when they do not load or match."""
    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"{key_file}: unsupported key type")
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*der) != key.public_key().public_bytes(*der):
        raise ValueError(f"{key_file} is not the key of {cert_file}")
    return cert, key


# ---- the controllers ------------------------------------------------------------------------------


class _CSRController(Controller):
    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.ctx.clock(), dt.UTC)


class CSRApprovingController(_CSRController):
    name = "csrapproving"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.csr_informer = self.informer(CSRS, on_change=self.enqueue)
        self.node_informer = self.informer(NODES)  # another node's addresses are never approved
        extra = ctx.options.extra
        self.policy = ServingPolicy(
            ip_prefixes=parse_prefixes(extra.get("kubelet_serving_ip_prefixes") or ""),
            service_cidrs=parse_prefixes(extra.get("service_cluster_ip_range") or DEFAULT_SERVICE_CIDR),
            cluster_cidrs=parse_prefixes(extra.get("cluster_cidr") or ""),
        )

    async def reconcile(self, key: str) -> None:
        csr = self.csr_informer.store.get(key)
        if csr is None or (csr.get("status") or {}).get("certificate"):
            return
        conds = conditions(csr)
        if "Approved" in conds or "Denied" in conds:
            return
        if (csr.get("spec") or {}).get("signerName") == KUBELET_SERVING_SIGNER:
            await self.approve_serving(key, csr)
            return
        tried: list[str] = []
        for subresource, message in approval_permission(csr):
            tried.append(subresource)
            review = await self.client.create(SUBJECT_ACCESS_REVIEWS, access_review(csr, subresource))
            if not (review.get("status") or {}).get("allowed"):
                continue
            approved = with_condition(csr, "Approved", "AutoApproved", message, self.now())
            try:
                await self.client._call(update_request, CSRS, approved, "approval")
            except errors.Conflict:
                self.queue.add_after(key, 0.5)  # the cache is behind; look again
                return
            except errors.NotFound:
                return
            log.info("approved CSR %s (%s)", name_of(csr), subresource)
            return
        if tried:
            log.info(
                "CSR %s recognized as %s but the SubjectAccessReview was not approved",
                name_of(csr),
                tried,
            )

    async def approve_serving(self, key: str, csr: Obj) -> None:
        """Approve a kubelet serving CSR that names only its node's own name and allowed addresses
        (:func:`serving_sans_problem`); leave any other pending, logged and with a Warning Event."""
        node_name = serving_node(csr)
        if node_name is None:
            self.leave(csr, "not a node's own request")
            return
        try:
            node = await self.client.get(NODES, node_name)
        except errors.NotFound:
            self.leave(csr, f"no node {node_name}")
            return
        try:
            endpoints = await self.client.get(ENDPOINTS, "kubernetes", "default")
        except errors.NotFound:
            endpoints = {}
        apiserver_ips = [
            str(a.get("ip"))
            for subset in endpoints.get("subsets") or []
            for a in subset.get("addresses") or []
            if a.get("ip")
        ]
        problem = serving_sans_problem(
            csr,
            node,
            self.policy,
            other_nodes=self.node_informer.store.list(),
            apiserver_ips=apiserver_ips,
        )
        if problem is not None:
            self.leave(csr, problem)
            return
        approved = with_condition(csr, "Approved", "AutoApproved", SERVING_MESSAGE, self.now())
        try:
            await self.client._call(update_request, CSRS, approved, "approval")
        except errors.Conflict:
            self.queue.add_after(key, 0.5)
            return
        except errors.NotFound:
            return
        log.info("approved kubelet serving CSR %s of node %s", name_of(csr), node_name)

    def leave(self, csr: Obj, why: str) -> None:
        log.info("kubelet serving CSR %s left for an administrator: %s", name_of(csr), why)
        self.recorder.event(csr, WARNING, "NotAutoApproved", f"left for an administrator: {why}")


class CSRSigningController(_CSRController):
    name = "csrsigning"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        extra = ctx.options.extra
        # (cert, key) from --cluster-signing-cert-file/--cluster-signing-key-file; None: sign nothing
        self.pair: tuple[x509.Certificate, Any] | None = extra.get("cluster_signing_pair")
        self.ttl = dt.timedelta(seconds=float(extra.get("cluster_signing_duration", 365 * 24 * 3600)))
        self.csr_informer = self.informer(CSRS, on_change=self.enqueue)

    async def reconcile(self, key: str) -> None:
        csr = self.csr_informer.store.get(key)
        if csr is None or not is_approved(csr) or self.pair is None:
            return
        status = csr.get("status") or {}
        if status.get("certificate") or "Failed" in conditions(csr):
            return
        spec = csr.get("spec") or {}
        rule = SIGNER_RULES.get(str(spec.get("signerName") or ""))
        if rule is None:
            return  # another signer's
        usages = [str(u) for u in spec.get("usages") or []]
        now = self.now()
        try:
            req = parse_request(csr)
            problem = None if req.is_signature_valid else "the request's signature is not valid"
        except ValueError as exc:
            req, problem = None, f"unable to parse csr: {exc}"
        if problem is None and req is not None:
            problem = rule(req, usages)
        try:
            if problem is not None or req is None:
                failed = with_condition(csr, "Failed", "SignerValidationFailure", str(problem), now)
                await self.client.update_status(CSRS, failed)
                log.info("CSR %s not signed: %s", name_of(csr), problem)
                return
            ttl = duration(self.ttl, spec.get("expirationSeconds"))
            pem = sign_request(req, usages, *self.pair, ttl, now)
            signed = deep_copy(csr)
            signed.setdefault("status", {})["certificate"] = base64.b64encode(pem).decode()
            await self.client.update_status(CSRS, signed)
        except errors.Conflict:
            self.queue.add_after(key, 0.5)
            return
        except errors.NotFound:
            return
        log.info("signed CSR %s (%s, %s)", name_of(csr), spec.get("signerName"), ttl)
