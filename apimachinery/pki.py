"""A cluster's certificate authority and the certificates, keys and kubeconfigs it issues.

One directory holds one cluster's PKI (``STATE/pki`` for ``minik up``)::

    ca.crt, ca.key                      the cluster CA (10 years)
    NAME.crt, NAME.key                  a client or serving certificate issued by that CA
    sa.key, sa.pub                      the RSA key pair that signs and verifies service account tokens

Certificates use ECDSA P-256 keys: they are made in well under a millisecond, so a cluster's
dozen certificates cost nothing at start-up.  A certificate is *reused* when its files exist, it
was signed by this CA, its subject and subject alternative names are the ones asked for, its key
matches it and it is not within ``renew_within_days`` of expiry; otherwise it is issued again.
So ``minik up`` after ``minik down`` (state kept) or a restart keeps the same files, and a cluster
that lives long enough gets fresh certificates before the old ones expire.

As in Kubernetes, a client certificate's Common Name is the user name and each Organization is a
group (``O=system:masters`` makes an administrator).  Private keys are written 0600 and the
directory is 0700.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY_DAYS = 3650
BACKDATE = dt.timedelta(minutes=5)  # tolerate a little clock skew between hosts

# The first IP of the default service range 10.96.0.0/12: the `kubernetes` Service's ClusterIP.
DEFAULT_SERVICE_IP = "10.96.0.1"
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

CertKey = tuple[Path, Path]
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a 0600 file, atomically (a reader never sees half a key)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _public_der(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | object) -> bytes:
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b""


def _name(common_name: str | None, organizations: Iterable[str] = ()) -> x509.Name:
    """O=each of ``organizations``, then CN=``common_name`` (none when it is None)."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    if common_name is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _split_hosts(hosts: Iterable[str]) -> tuple[list[_IPAddress], list[str]]:
    """IP literals become IP SANs, everything else DNS SANs; duplicates dropped, order kept."""
    ips: list[_IPAddress] = []
    names: list[str] = []
    for host in hosts:
        if not host:
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if host not in names:
                names.append(host)
            continue
        if ip not in ips:
            ips.append(ip)
    return ips, names


def _sans(cert: x509.Certificate) -> tuple[set[_IPAddress], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    ips = {ip for ip in ext.get_values_for_type(x509.IPAddress) if isinstance(ip, _IPAddress)}
    return ips, set(ext.get_values_for_type(x509.DNSName))


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def subject_of(cert: bytes) -> tuple[str, tuple[str, ...]]:
    """The (Common Name, Organizations) of a certificate given as DER or PEM bytes: (user, groups)."""
    subject = load_certificate(cert).subject
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    groups = tuple(str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return cn, groups


def _sign(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    days: int,
    *,
    ca: bool = False,
    crl_sign: bool = False,
    usages: Sequence[x509.ObjectIdentifier] = (),
    ips: Sequence[_IPAddress] = (),
    dns: Sequence[str] = (),
    backdate: dt.timedelta = BACKDATE,
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``signer`` (the key of ``issuer``), valid from
    ``backdate`` before now for ``days``: a CA (signs certificates, and CRLs with ``crl_sign``) or a
    leaf, with the extended key ``usages`` and subject alternative names given (none left out)."""
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=crl_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
    )
    if ips or dns:
        general: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        general += [x509.IPAddress(ip) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(signer, hashes.SHA256())


def generate_certificate(
    common_name: str | None,
    hosts: Iterable[str] = (),
    *,
    organizations: Iterable[str] = (),
    signed_by: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    days: int = 365,
    ca: bool = False,
    usages: Sequence[x509.ObjectIdentifier] = (),
    backdate: dt.timedelta = BACKDATE,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new ECDSA P-256 key and a certificate for it, in memory (nothing is written).

    The subject is ``O=`` each of ``organizations`` then ``CN=common_name`` (no CN when it is None);
    ``hosts`` become the subject alternative names (IP literals as IP SANs, the rest as DNS SANs).
    The certificate is signed by ``signed_by`` (a CA's certificate and key) or, without one, by its
    own key (self-signed); it is a CA with ``ca``, has the extended key ``usages`` given and is valid
    from ``backdate`` before now for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name, organizations)
    issuer, signer = (signed_by[0].subject, signed_by[1]) if signed_by is not None else (subject, key)
    ips, dns = _split_hosts(hosts)
    cert = _sign(
        subject,
        key.public_key(),
        issuer,
        signer,
        days,
        ca=ca,
        usages=usages,
        ips=ips,
        dns=dns,
        backdate=backdate,
    )
    return cert, key


def pem_pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    """A certificate and its key as PEM: the key unencrypted PKCS#8 (``BEGIN PRIVATE KEY``), as
    ``kubectl create secret tls`` and HAProxy take it."""
    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class PKI:
    """The CA in ``directory`` and the certificates it signs there (see the module's docstring)."""

    def __init__(
        self, directory: str | os.PathLike[str], *, validity_days: int = 365, renew_within_days: int = 30
    ) -> None:
        self.directory = Path(directory)
        self.ca_cert = self.directory / "ca.crt"
        self.ca_key = self.directory / "ca.key"
        self.validity_days = validity_days
        self.renew_within_days = renew_within_days
        self._ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None

    # -- the CA ------------------------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o777 != 0o700:
            os.chmod(self.directory, 0o700)

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        try:
            cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
            key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        except (OSError, ValueError):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            return None
        if _public_der(cert.public_key()) != _public_der(key.public_key()):
            return None
        if cert.not_valid_after_utc <= _now():
            return None
        return cert, key

    def ensure_ca(self, common_name: str = "minik-ca") -> Path:
        """Create the CA (valid 10 years) unless a usable one is already in the directory."""
        if self._ca is not None:
            return self.ca_cert
        self._ensure_directory()
        loaded = self._load_ca()
        if loaded is None:
            key = ec.generate_private_key(ec.SECP256R1())
            name = _name(common_name)
            cert = _sign(name, key.public_key(), name, key, CA_VALIDITY_DAYS, ca=True, crl_sign=True)
            _write_private(self.ca_key, _key_pem(key))
            _write_public(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
            loaded = (cert, key)
        self._ca = loaded
        return self.ca_cert

    def _ca_pair(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        self.ensure_ca()
        assert self._ca is not None
        return self._ca

    def ca_pem(self) -> str:
        """The CA certificate as PEM text (what kubeconfigs embed and clients trust)."""
        self.ensure_ca()
        return self.ca_cert.read_text()

    # -- issued certificates -------------------------------------------------------------------------

    def paths(self, name: str) -> CertKey:
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"

    def client_cert(self, name: str, user: str, groups: Sequence[str] = ()) -> CertKey:
        """A client certificate for ``user`` in ``groups`` (CN and O), as ``name.crt``/``name.key``."""
        return self._issue(name, _name(user, groups), [], [], [ExtendedKeyUsageOID.CLIENT_AUTH])

    def serving_cert(
        self, name: str, hosts: Iterable[str], common_name: str | None = None, *, client_auth: bool = False
    ) -> CertKey:
        """A TLS serving certificate for ``hosts`` (IP literals as IP SANs, the rest as DNS SANs);
        with ``client_auth`` good as a client certificate too (etcd's peer certificates are both)."""
        ips, dns = _split_hosts(hosts)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        return self._issue(name, _name(common_name or name), ips, dns, usages)

    def _usable(
        self,
        crt: Path,
        key_path: Path,
        subject: x509.Name,
        ips: list[_IPAddress],
        dns: list[str],
        usages: list[x509.ObjectIdentifier],
    ) -> bool:
        ca_cert, _ = self._ca_pair()
        try:
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError):
            return False
        if cert.issuer != ca_cert.subject or cert.subject != subject:
            return False
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        if _public_der(cert.public_key()) != _public_der(key.public_key()):
            return False
        if _sans(cert) != (set(ips), set(dns)):
            return False
        try:
            eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            return False
        if eku != usages:
            return False
        return cert.not_valid_after_utc - _now() > dt.timedelta(days=self.renew_within_days)

    def _issue(
        self,
        name: str,
        subject: x509.Name,
        ips: list[_IPAddress],
        dns: list[str],
        usages: list[x509.ObjectIdentifier],
    ) -> CertKey:
        ca_cert, ca_key = self._ca_pair()
        crt, key_path = self.paths(name)
        if self._usable(crt, key_path, subject, ips, dns, usages):
            return crt, key_path
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _sign(
            subject,
            key.public_key(),
            ca_cert.subject,
            ca_key,
            self.validity_days,
            usages=usages,
            ips=ips,
            dns=dns,
        )
        _write_private(key_path, _key_pem(key))
        _write_public(crt, cert.public_bytes(serialization.Encoding.PEM))
        return crt, key_path

    # -- service account keys ------------------------------------------------------------------------

    def service_account_keys(self) -> CertKey:
        """The RSA 2048 key pair that signs (``sa.key``) and verifies (``sa.pub``) service account tokens."""
        self._ensure_directory()
        private, public = self.directory / "sa.key", self.directory / "sa.pub"
        try:
            # our own key: OpenSSL's RSA consistency check would cost 50-250 ms on every start
            key = serialization.load_pem_private_key(
                private.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
            )
        except (OSError, ValueError):
            key = None
        if not isinstance(key, rsa.RSAPrivateKey):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_private(private, _key_pem(key))
        pub_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            current = public.read_bytes()
        except OSError:
            current = b""
        if current != pub_pem:
            _write_public(public, pub_pem)
        return private, public


def self_signed_serving_cert(
    crt: str | os.PathLike[str],
    key: str | os.PathLike[str],
    common_name: str,
    hosts: Iterable[str],
    *,
    validity_days: int = 365,
    renew_within_days: int = 30,
) -> CertKey:
    """A serving certificate for ``hosts`` that is its own CA (what a kubelet makes when it is given
    none), as the files ``crt`` and ``key``: reused while it names the same hosts, its key matches
    it and it is more than ``renew_within_days`` from expiry, otherwise made again."""
    crt_path, key_path = Path(crt), Path(key)
    hosts = list(hosts)  # read twice: compared with the old certificate's SANs, then a new one's
    ips, dns = _split_hosts(hosts)
    try:
        old = x509.load_pem_x509_certificate(crt_path.read_bytes())
        old_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        pass
    else:
        if (
            _sans(old) == (set(ips), set(dns))
            and _public_der(old.public_key()) == _public_der(old_key.public_key())
            and old.not_valid_after_utc - _now() > dt.timedelta(days=renew_within_days)
        ):
            return crt_path, key_path
    cert, private = generate_certificate(
        common_name, hosts, days=validity_days, ca=True, usages=[ExtendedKeyUsageOID.SERVER_AUTH]
    )
    _write_private(key_path, _key_pem(private))
    _write_public(crt_path, cert.public_bytes(serialization.Encoding.PEM))
    return crt_path, key_path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig_dict(
    *,
    server: str,
    ca_pem: str,
    cert: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
    token: str | None = None,
    context: str = "minik",
    cluster: str = "minik",
    user: str = "minik",
    namespace: str | None = None,
) -> dict[str, object]:
    """A kubeconfig (as a dict) with one cluster, user and context, every credential embedded."""
    user_entry: dict[str, str] = {}
    if cert is not None:
        crt, key = cert
        user_entry["client-certificate-data"] = _b64(Path(crt).read_bytes())
        user_entry["client-key-data"] = _b64(Path(key).read_bytes())
    if token is not None:
        user_entry["token"] = token
    ctx: dict[str, str] = {"cluster": cluster, "user": user}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem.encode())},
            }
        ],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(
    path: str | os.PathLike[str],
    *,
    server: str,
    ca_pem: str,
    cert: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
    token: str | None = None,
    context: str = "minik",
    cluster: str = "minik",
    user: str = "minik",
    namespace: str | None = None,
) -> Path:
    """Write a standalone kubeconfig (CA, client certificate and key embedded) as a 0600 file."""

    data = kubeconfig_dict(
        server=server,
        ca_pem=ca_pem,
        cert=cert,
        token=token,
        context=context,
        cluster=cluster,
        user=user,
        namespace=namespace,
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_private(target, dump_yaml(data).encode())
    return target


def dump_yaml(data: object) -> str:
    """YAML text, with libyaml's emitter when PyYAML has it (the pure-Python one takes ~10 ms per
    kubeconfig, most of it on the long base64 lines)."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(data, Dumper=dumper, sort_keys=False))


def apiserver_hosts(addresses: Iterable[str] = (), service_ip: str = DEFAULT_SERVICE_IP) -> list[str]:
    """The API server's SANs: 127.0.0.1, ``addresses``, the first service IP and its DNS names."""
    return ["127.0.0.1", *addresses, service_ip, *APISERVER_DNS_NAMES]
