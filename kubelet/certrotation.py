"""Kubelet client-certificate rotation, as Kubernetes' certificate manager (client-go
``util/certificate``) does it for a bootstrapped kubelet.

The kubelet's client certificate and key live in one PEM file (``kubelet-client-current.pem``,
which its kubeconfig names as both ``client-certificate`` and ``client-key``).  When the
certificate has passed a jittered 70-90 % of its lifetime (``notBefore + [0.7, 0.9] * (notAfter -
notBefore)``, Kubernetes' ``nextRotationDeadline``), the kubelet makes a new ECDSA P-256 key and a
CertificateSigningRequest for ``CN=system:node:NAME, O=system:nodes`` to signer
``kubernetes.io/kube-apiserver-client-kubelet`` -- sent with its current certificate, so
csrapproving approves it through the ``selfnodeclient`` permission -- waits for
``status.certificate``, checks that the certificate carries the new key's public key, writes
certificate and key to a new file beside the old one, loads that into the TLS context its API
client uses (new connections present the new certificate) and only then renames it over the old
one: a certificate that does not fit the key or that OpenSSL refuses leaves file and context as
they were.

The kubelet's serving certificate (``--rotate-server-certificates``, Kubernetes'
``serverTLSBootstrap``) is requested and renewed the same way: a CSR to signer
``kubernetes.io/kubelet-serving`` for the same subject, with the node's name and addresses as
subject alternative names and usages digital signature, key encipherment and server auth, kept in
``kubelet-server-current.pem``; the new pair is loaded into the TLS context of the kubelet's HTTPS
server, so the next handshake presents it.  A serving certificate that no longer fits what the
kubelet would ask for -- another subject, or SANs that are not its serving names, as after a change
of its node IP -- is renewed at once instead of at the deadline (client-go's
``certSatisfiesTemplate``), checked at start and every 30 s while waiting.  Kubernetes approves no serving CSR by itself;
minik's csrapproving approves one only under strict rules (controllers/certificates.py), else it
stays pending for ``kubectl certificate approve``.

The timing functions are pure; :class:`Rotator` does the I/O.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
import os
import random
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apimachinery import errors
from apimachinery.client import Client
from apimachinery.resources import kind_info

log = logging.getLogger("kubelet.certrotation")

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
CLIENT_USAGES = ["digital signature", "client auth"]  # ECDSA keys: no key encipherment
SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]  # what Kubernetes' kubelet asks
SERVING_WAIT = 15 * 60.0  # Kubernetes' certificate manager waits this long for a serving CSR's approval
CSRS = kind_info("certificates.k8s.io/v1", "CertificateSigningRequest")
LOW, HIGH = 0.7, 0.9  # the jittered share of the lifetime after which the certificate is renewed
RETRY = 5.0  # seconds between attempts after a failed renewal
TEMPLATE_CHECK = 30.0  # seconds between checks, while waiting, that the certificate still fits


# ---- timing (pure) ---------------------------------------------------------------------------------


def rotation_fraction(rand: Callable[[], float] = random.random) -> float:
    """Kubernetes' ``jitteryDuration``: ``Jitter(total, 0.2) - 0.3 * total`` as a share, in [0.7, 0.9)."""
    return LOW + (HIGH - LOW) * rand()


def rotation_deadline(not_before: dt.datetime, not_after: dt.datetime, fraction: float) -> dt.datetime:
    """When a certificate valid from ``not_before`` to ``not_after`` is renewed."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"rotation fraction {fraction} is not within [0, 1]")
    return not_before + (not_after - not_before) * fraction


def seconds_until(deadline: dt.datetime, now: dt.datetime) -> float:
    """Seconds to wait for ``deadline`` (0 once it has passed)."""
    return max(0.0, (deadline - now).total_seconds())


def validity(cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


# ---- keys, requests and files ----------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def csr_pem(node: str, key: ec.EllipticCurvePrivateKey, sans: list[str] | None = None) -> bytes:
    """The kubelet's CSR: ``CN=system:node:NODE, O=system:nodes``; ``sans`` (a serving
    certificate's host names and IP addresses) as subject alternative names, none for a client's."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(san_names(sans)), critical=False)
    req = builder.sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM)


def san_names(values: list[str]) -> list[x509.GeneralName]:
    """IP addresses as IP SANs, anything else as DNS names; duplicates dropped, order kept."""
    out: list[x509.GeneralName] = []
    for value in dict.fromkeys(v for v in values if v):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            out.append(x509.DNSName(value))
    return out


def csr_object(
    node: str,
    request_pem: bytes,
    expiration_seconds: int | None = None,
    *,
    serving: bool = False,
) -> dict[str, Any]:
    """The CertificateSigningRequest a kubelet posts (``generateName`` ``node-csr-``; ``csr-`` for
    a serving certificate's, as Kubernetes' certificate manager names them)."""
    spec: dict[str, Any] = {
        "request": base64.b64encode(request_pem).decode(),
        "signerName": KUBELET_SERVING_SIGNER if serving else KUBELET_CLIENT_SIGNER,
        "usages": list(SERVING_USAGES if serving else CLIENT_USAGES),
    }
    if expiration_seconds:
        spec["expirationSeconds"] = int(expiration_seconds)
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-" if serving else "node-csr-", "labels": {"minik.io/node": node}},
        "spec": spec,
    }


def issued_certificate(csr: dict[str, Any]) -> bytes | None:
    """``status.certificate`` (PEM) once signed; raises ValueError when the CSR was denied or failed."""
    status = csr.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Denied", "Failed") and cond.get("status", "True") == "True":
            raise ValueError(
                f"CSR {csr.get('metadata', {}).get('name')} {cond['type']}: "
                f"{cond.get('reason', '')} {cond.get('message', '')}".strip()
            )
    cert = status.get("certificate")
    return base64.b64decode(cert) if cert else None


def write_pair_atomically(
    path: Path, cert_pem: bytes, key_pem_: bytes, check: Callable[[str], None] | None = None
) -> None:
    """Certificate and key in one 0600 PEM file, written beside ``path`` and renamed over it.

    ``check`` (if given) is called with the temporary file's path before the rename; when it
    raises, the temporary file is removed and ``path`` keeps its old content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem_)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_issued(cert_pem: bytes, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """The issued certificate, parsed; ValueError when it is not PEM or does not carry ``key``'s
    public key (a certificate for another key would break every new connection)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise ValueError("the issued certificate does not match the new private key")
    return cert


def template_problem(cert: x509.Certificate, node: str, sans: list[str] | None) -> str | None:
    """Why ``cert`` is not what the kubelet would ask for now (client-go's
    ``certSatisfiesTemplate``): subject ``CN=system:node:NODE, O=system:nodes`` and, for a serving
    certificate (``sans`` given), exactly those DNS names and IP addresses; None when it is."""
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if cns != [f"system:node:{node}"] or orgs != ["system:nodes"]:
        return f"its subject is {cert.subject.rfc4514_string()}"
    if sans is None:
        return None
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have_dns, have_ips = (
            set(ext.get_values_for_type(x509.DNSName)),
            set(ext.get_values_for_type(x509.IPAddress)),
        )
    except x509.ExtensionNotFound:
        have_dns, have_ips = set(), set()
    wanted = san_names(sans)
    want_dns = {n.value for n in wanted if isinstance(n, x509.DNSName)}
    want_ips = {n.value for n in wanted if isinstance(n, x509.IPAddress)}
    if have_dns != want_dns or have_ips != want_ips:
        have = sorted(have_dns) + sorted(str(i) for i in have_ips)
        want = sorted(want_dns) + sorted(str(i) for i in want_ips)
        return f"it names {have}, the kubelet serves as {want}"
    return None


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# ---- the rotation loop ------------------------------------------------------------------------------


class Rotator:
    """Renews the certificate in ``pem_path`` before it expires and loads the new one into ``ctx``:
    the client certificate into the TLS context of the kubelet's API client, or (``serving``) the
    serving certificate into the context of its HTTPS server.

    A serving rotator whose file is missing or unreadable asks for a certificate at once (the
    kubelet's first one; it serves a self-signed one until then).  ``on_rotated`` runs after each
    renewal (the kubelet closes its API client's connections there, so that watches reconnect with
    the new certificate, as client-go's connection rotation does)."""

    def __init__(
        self,
        client: Client,
        node: str,
        pem_path: Path,
        ctx: ssl.SSLContext,
        *,
        fraction: float | None = None,
        expiration_seconds: int | None = None,
        serving: bool = False,
        sans: Callable[[], list[str]] | None = None,
        on_rotated: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.node = node
        self.path = pem_path
        self.ctx = ctx
        self.fraction = fraction  # None: jittered 0.7-0.9 for each certificate
        self.expiration_seconds = expiration_seconds
        self.serving = serving
        self.sans = sans or (lambda: [])
        self.on_rotated = on_rotated
        self.rotations = 0
        self.what = "serving" if serving else "client"

    def next_deadline(self, cert: x509.Certificate) -> dt.datetime:
        fraction = self.fraction if self.fraction is not None else rotation_fraction()
        return rotation_deadline(*validity(cert), fraction)

    def stale(self, cert: x509.Certificate) -> str | None:
        """Why the serving certificate ``cert`` must be renewed at once (:func:`template_problem`):
        its names are no longer the kubelet's (its node IP changed), or another subject.  None for
        the client certificate, which is renewed at its deadline."""
        return template_problem(cert, self.node, self.sans()) if self.serving else None

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            cert: x509.Certificate | None = None
            try:
                cert = load_certificate(self.path)
            except (OSError, ValueError) as exc:
                if not self.serving:
                    log.error("cannot read the client certificate %s: %s", self.path, exc)
                    if await _wait(stop, RETRY):
                        return
                    continue
                log.info("no serving certificate in %s yet (%s): requesting one", self.path, exc)
                wait = 0.0
            else:
                deadline = self.next_deadline(cert)
                wait = seconds_until(deadline, dt.datetime.now(dt.UTC))
                problem = self.stale(cert)
                if problem is not None:
                    log.info("%s certificate renewed now: %s", self.what, problem)
                    wait = 0.0
                else:
                    log.info(
                        "%s certificate valid until %s; renewing at %s (in %.0fs)",
                        self.what,
                        cert.not_valid_after_utc.isoformat(),
                        deadline.isoformat(),
                        wait,
                    )
            # wait for the deadline, looking at the names now and then, as client-go does
            end = loop.time() + wait
            while (remaining := end - loop.time()) > 0:
                if await _wait(stop, min(remaining, TEMPLATE_CHECK)):
                    return
                problem = self.stale(cert) if cert is not None else None
                if problem is not None:
                    log.info("%s certificate renewed now: %s", self.what, problem)
                    break
            if stop.is_set():
                return
            while not stop.is_set():
                try:
                    await self.rotate()
                    break
                except (errors.StatusError, ValueError, OSError, TimeoutError) as exc:
                    log.warning(
                        "%s certificate renewal failed (%s); retrying in %.0fs", self.what, exc, RETRY
                    )
                    if await _wait(stop, RETRY):
                        return

    async def rotate(self, timeout: float | None = None) -> x509.Certificate:
        """One renewal: a new key and CSR, the signed certificate written and loaded."""
        if timeout is None:
            timeout = SERVING_WAIT if self.serving else 60.0
        key = new_key()
        sans = self.sans() if self.serving else None
        obj = csr_object(
            self.node, csr_pem(self.node, key, sans), self.expiration_seconds, serving=self.serving
        )
        created = await self.client.create(CSRS, obj)
        name = created["metadata"]["name"]
        log.info("posted CertificateSigningRequest %s for a new %s certificate", name, self.what)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        pem: bytes | None = None
        poll = 0.2
        while pem is None:
            pem = issued_certificate(await self.client.get(CSRS, name))
            if pem is None:
                if loop.time() > end:
                    raise TimeoutError(f"CSR {name} was not signed in {timeout:.0f}s")
                await asyncio.sleep(poll)
                poll = min(poll * 1.5, 2.0)  # a serving CSR may wait long for an administrator
        cert = check_issued(pem, key)

        def load(tmp: str) -> None:
            # Load the new file before it replaces the old one: a pair OpenSSL refuses leaves both
            # the file and the context as they were.  A scratch context first, so that a failure
            # cannot leave the live one half updated.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(tmp, tmp)
            self.ctx.load_cert_chain(tmp, tmp)  # new connections (handshakes) present it

        write_pair_atomically(self.path, pem, key_pem(key), check=load)
        self.rotations += 1
        log.info(
            "rotated the %s certificate (CSR %s, serial %x, valid until %s)",
            self.what,
            name,
            cert.serial_number,
            cert.not_valid_after_utc.isoformat(),
        )
        if self.on_rotated is not None:
            await self.on_rotated()
        return cert


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop``; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False
