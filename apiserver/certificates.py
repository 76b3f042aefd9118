"""``certificates.k8s.io/v1`` CertificateSigningRequests: the REST strategies and the admission
checks, as Kubernetes' ``pkg/registry/certificates`` and ``plugin/pkg/admission/certificates``.

* create: ``spec.username``, ``uid``, ``groups`` and ``extra`` are the requesting user's, whatever
  the client sent; ``status`` starts empty;
* the main resource changes only metadata (the spec is immutable, the status is the subresources');
* ``/status`` changes the status but keeps the Approved and Denied conditions as stored;
* ``/approval`` changes only the conditions;
* conditions without ``lastUpdateTime``/``lastTransitionTime`` get now (or, for an unchanged
  type and status, the stored transition time).

Admission (plugins ``CertificateApproval``, ``CertificateSigning``,
``CertificateSubjectRestriction``): adding an Approved or Denied condition needs verb ``approve``
on ``certificates.k8s.io`` resource ``signers`` named the request's signerName (or
``DOMAIN/*``); setting ``status.certificate`` needs verb ``sign`` the same way; a request for
``kubernetes.io/kube-apiserver-client`` may not name the group ``system:masters``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from apimachinery import errors
from apimachinery.timefmt import rfc3339

from . import validation_certificates as vc
from .authtypes import Attributes, UserInfo

if TYPE_CHECKING:
    from .authz import Authorizer

Obj = dict[str, Any]
GROUP = "certificates.k8s.io"
KIND = "CertificateSigningRequest"
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"

authorizer: Authorizer | None = None
"""The API server's authorizer (set by :func:`apiserver.authn.from_args`); None: no checks (the
insecure port only, where every request is ``system:masters``)."""


def is_csr(info: Any) -> bool:
    return bool(info.group == GROUP and info.kind == KIND)


def prepare_create(obj: Obj, user: UserInfo | None) -> None:
    """The requesting user into the spec; an empty status."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    for key in ("username", "uid", "groups", "extra"):
        spec.pop(key, None)
    if user is not None:
        spec["username"] = user.name
        if user.uid:
            spec["uid"] = user.uid
        if user.groups:
            spec["groups"] = list(user.groups)
        if user.extra:
            spec["extra"] = user.extra_dict()
    obj["status"] = {}


def _conditions(obj: Obj) -> list[Obj]:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return [c for c in conditions if isinstance(c, dict)] if isinstance(conditions, list) else []


def _populate_timestamps(new: Obj, old: Obj) -> None:
    now = rfc3339()
    for c in _conditions(new):
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = next(
                (
                    o["lastTransitionTime"]
                    for o in _conditions(old)
                    if o.get("type") == c.get("type")
                    and o.get("status") == c.get("status")
                    and o.get("lastTransitionTime")
                ),
                now,
            )


def prepare_update(result: Obj, new: Obj, old: Obj, subresource: str | None) -> Obj:
    """The object to store for an update of the main resource, /status or /approval; ``result``
    is what the generic strategy made of ``new`` (metadata merged)."""
    result["spec"] = copy.deepcopy(old.get("spec"))
    if subresource == "approval":
        status = dict(old.get("status") or {}) if isinstance(old.get("status"), dict) else {}
        new_status = new.get("status") if isinstance(new.get("status"), dict) else {}
        assert isinstance(new_status, dict)
        if "conditions" in new_status:
            status["conditions"] = copy.deepcopy(new_status["conditions"])
        else:
            status.pop("conditions", None)
        result["status"] = status
    elif subresource == "status":
        sent = result.get("status")
        written: Obj = sent if isinstance(sent, dict) else {}
        kept = [c for c in _conditions(result) if c.get("type") not in (vc.APPROVED, vc.DENIED)]
        kept += [copy.deepcopy(c) for c in _conditions(old) if c.get("type") in (vc.APPROVED, vc.DENIED)]
        if kept or "conditions" in written:
            written["conditions"] = kept
        if written or isinstance(sent, dict):
            result["status"] = written
    else:
        if "status" in old:
            result["status"] = copy.deepcopy(old["status"])
        else:
            result.pop("status", None)
    if subresource in ("approval", "status"):
        _populate_timestamps(result, old)
    return result


# --- admission -------------------------------------------------------------------------------------
def _allowed(user: UserInfo, verb: str, signer: str) -> bool:
    """``isAuthorizedForSignerName``: the signer's name, then ``DOMAIN/*``."""
    assert authorizer is not None
    for name in (signer, signer.split("/", 1)[0] + "/*"):
        attrs = Attributes(user, verb, True, GROUP, "*", "signers", "", "", name)
        if authorizer.authorize(attrs).allowed:
            return True
    return False


def admit_create(obj: Obj) -> None:
    """CertificateSubjectRestriction: no ``system:masters`` client certificates through the API."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    if spec.get("signerName") != KUBE_APISERVER_CLIENT:
        return
    data = vc.decode_bytes(spec.get("request"))
    try:
        csr = vc.parse_csr(data or b"")
    except ValueError:
        return  # validation has refused it already
    from cryptography.x509.oid import NameOID

    orgs = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if "system:masters" in orgs:
        raise errors.Forbidden("use of kubernetes.io/kube-apiserver-client signer with system:masters group")


def admit_update(obj: Obj, old: Obj, subresource: str, user: UserInfo | None, plugins: set[str]) -> None:
    """CertificateApproval on /approval, CertificateSigning on /status (403 when not allowed)."""
    if user is None or authorizer is None:
        return
    signer = str((obj.get("spec") or {}).get("signerName") or "")
    if subresource == "approval" and "CertificateApproval" in plugins:
        before = [(c.get("type"), c.get("status")) for c in _conditions(old)]
        after = [(c.get("type"), c.get("status")) for c in _conditions(obj)]
        if before != after and not _allowed(user, "approve", signer):
            raise errors.Forbidden(f'user not permitted to approve requests with signerName "{signer}"')
    if subresource == "status" and "CertificateSigning" in plugins:
        new_cert = (obj.get("status") or {}).get("certificate") or ""
        old_cert = (old.get("status") or {}).get("certificate") or ""
        if new_cert != old_cert and not _allowed(user, "sign", signer):
            raise errors.Forbidden(f'user not permitted to sign requests with signerName "{signer}"')
