"""The cluster CA and the certificates it issues: reuse, reissue, key modes, chains and subjects."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import stat

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store

from apimachinery import pki as pkimod
from apimachinery.pki import PKI, subject_of, write_kubeconfig

pytestmark = pytest.mark.unit


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_created_once_and_reused(tmp_path):
    p = PKI(tmp_path / "pki")
    ca = p.ensure_ca()
    first = ca.read_bytes()
    assert _mode(tmp_path / "pki") == 0o700
    assert _mode(p.ca_key) == 0o600
    cert = _cert(ca)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=3649)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    # a new PKI object over the same directory keeps the CA
    PKI(tmp_path / "pki").ensure_ca()
    assert ca.read_bytes() == first
    assert p.ca_pem() == first.decode()


def test_client_cert_subject_and_reuse(tmp_path):
    p = PKI(tmp_path)
    crt, key = p.client_cert("admin", "kubernetes-admin", ["system:masters"])
    assert (crt.name, key.name) == ("admin.crt", "admin.key")
    assert _mode(key) == 0o600
    assert subject_of(crt.read_bytes()) == ("kubernetes-admin", ("system:masters",))
    der = _cert(crt).public_bytes(serialization.Encoding.DER)
    assert subject_of(der) == ("kubernetes-admin", ("system:masters",))
    eku = _cert(crt).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    before = crt.read_bytes(), key.read_bytes()
    # same request, fresh object: the same files
    assert PKI(tmp_path).client_cert("admin", "kubernetes-admin", ["system:masters"]) == (crt, key)
    assert (crt.read_bytes(), key.read_bytes()) == before


def test_several_groups_and_no_group(tmp_path):
    p = PKI(tmp_path)
    crt, _ = p.client_cert("alice", "alice", ["dev", "ops"])
    assert subject_of(crt.read_bytes()) == ("alice", ("dev", "ops"))
    crt, _ = p.client_cert("scheduler", "system:kube-scheduler")
    assert subject_of(crt.read_bytes()) == ("system:kube-scheduler", ())


def test_subject_change_reissues(tmp_path):
    p = PKI(tmp_path)
    crt, _ = p.client_cert("alice", "alice", ["dev"])
    serial = _cert(crt).serial_number
    p.client_cert("alice", "alice", ["ops"])
    assert _cert(crt).serial_number != serial
    assert subject_of(crt.read_bytes()) == ("alice", ("ops",))


def test_serving_cert_sans_and_reissue_on_change(tmp_path):
    p = PKI(tmp_path)
    hosts = pkimod.apiserver_hosts(["192.168.1.7"])
    crt, key = p.serving_cert("apiserver", hosts, common_name="kube-apiserver")
    cert = _cert(crt)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("192.168.1.7"),
        ipaddress.ip_address("10.96.0.1"),
    }
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert subject_of(crt.read_bytes()) == ("kube-apiserver", ())
    serial = cert.serial_number
    # the same hosts in another order: reused
    p.serving_cert("apiserver", list(reversed(hosts)), common_name="kube-apiserver")
    assert _cert(crt).serial_number == serial
    # a new address: reissued with it
    p.serving_cert("apiserver", [*hosts, "10.0.0.9"], common_name="kube-apiserver")
    cert2 = _cert(crt)
    assert cert2.serial_number != serial
    ips = cert2.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.0.0.9") in ips.get_values_for_type(x509.IPAddress)


def test_near_expiry_reissues(tmp_path):
    PKI(tmp_path, validity_days=40, renew_within_days=30).client_cert("x", "x")
    crt = tmp_path / "x.crt"
    serial = _cert(crt).serial_number
    # 40 days left, renewal window 30: reused
    PKI(tmp_path, validity_days=40, renew_within_days=30).client_cert("x", "x")
    assert _cert(crt).serial_number == serial
    # renewal window 50: within it, so a new certificate
    PKI(tmp_path, validity_days=40, renew_within_days=50).client_cert("x", "x")
    assert _cert(crt).serial_number != serial


def test_cert_from_another_ca_is_reissued(tmp_path):
    PKI(tmp_path / "a").client_cert("x", "x")
    other = PKI(tmp_path / "b")
    other.ensure_ca()
    (tmp_path / "b" / "x.crt").write_bytes((tmp_path / "a" / "x.crt").read_bytes())
    (tmp_path / "b" / "x.key").write_bytes((tmp_path / "a" / "x.key").read_bytes())
    crt, _ = other.client_cert("x", "x")
    assert _cert(crt).issuer == _cert(other.ca_cert).subject
    _cert(crt).verify_directly_issued_by(_cert(other.ca_cert))


def test_key_not_matching_cert_is_reissued(tmp_path):
    p = PKI(tmp_path)
    crt, key = p.client_cert("x", "x")
    stray = ec.generate_private_key(ec.SECP256R1())
    key.write_bytes(
        stray.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    serial = _cert(crt).serial_number
    PKI(tmp_path).client_cert("x", "x")
    assert _cert(crt).serial_number != serial
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    assert loaded.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == _cert(crt).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_serving_chain_verifies_for_its_names(tmp_path):
    p = PKI(tmp_path)
    crt, _ = p.serving_cert("apiserver", pkimod.apiserver_hosts(["192.168.1.7"]), "kube-apiserver")
    store = Store([_cert(p.ca_cert)])
    leaf = _cert(crt)
    for subject in (DNSName("kubernetes.default.svc"), IPAddress(ipaddress.ip_address("192.168.1.7"))):
        verifier = PolicyBuilder().store(store).build_server_verifier(subject)
        chain = verifier.verify(leaf, [])
        assert chain[-1] == _cert(p.ca_cert)
    with pytest.raises(Exception, match="."):
        PolicyBuilder().store(store).build_server_verifier(DNSName("example.com")).verify(leaf, [])


def _handshake(server_ctx, client_ctx, server_hostname):
    """A TLS handshake between two contexts over memory buffers (no sockets)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for side, obj in (("c", client), ("s", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    return server.getpeercert(binary_form=True)


def _contexts(p, client_name, user, groups):
    crt, key = p.serving_cert("apiserver", pkimod.apiserver_hosts(["192.168.1.7"]), "kube-apiserver")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    server_ctx.load_verify_locations(cafile=p.ca_cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    ccrt, ckey = p.client_cert(client_name, user, groups)
    client_ctx = ssl.create_default_context(cafile=p.ca_cert)
    client_ctx.load_cert_chain(ccrt, ckey)
    return server_ctx, client_ctx


def test_client_and_serving_chain_verify_in_a_tls_handshake(tmp_path):
    p = PKI(tmp_path)
    server_ctx, client_ctx = _contexts(p, "kubelet-n1-client", "system:node:n1", ["system:nodes"])
    for name in ("kubernetes.default.svc", "192.168.1.7", "localhost", "10.96.0.1"):
        peer = _handshake(server_ctx, client_ctx, name)
        assert subject_of(peer) == ("system:node:n1", ("system:nodes",))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server_ctx, client_ctx, "example.com")


def test_client_cert_of_another_ca_is_refused(tmp_path):
    p = PKI(tmp_path)
    server_ctx, _ = _contexts(p, "a", "a", [])
    other = PKI(tmp_path / "other")
    fcrt, fkey = other.client_cert("x", "system:node:n1", ["system:nodes"])
    client_ctx = ssl.create_default_context(cafile=p.ca_cert)
    client_ctx.load_cert_chain(fcrt, fkey)
    with pytest.raises(ssl.SSLError):
        _handshake(server_ctx, client_ctx, "localhost")


def test_service_account_keys(tmp_path):
    p = PKI(tmp_path)
    private, public = p.service_account_keys()
    assert (private.name, public.name) == ("sa.key", "sa.pub")
    assert _mode(private) == 0o600
    key = serialization.load_pem_private_key(private.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    pub = serialization.load_pem_public_key(public.read_bytes())
    assert pub.public_numbers() == key.public_key().public_numbers()
    before = private.read_bytes()
    PKI(tmp_path).service_account_keys()
    assert private.read_bytes() == before


def test_write_kubeconfig_embeds_everything(tmp_path):
    p = PKI(tmp_path / "pki")
    crt, key = p.client_cert("admin", "kubernetes-admin", ["system:masters"])
    path = write_kubeconfig(
        tmp_path / "admin.conf", server="https://127.0.0.1:6443", ca_pem=p.ca_pem(), cert=(crt, key)
    )
    assert _mode(path) == 0o600
    data = yaml.safe_load(path.read_text())
    assert data["current-context"] == "minik"
    cluster = data["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert "insecure-skip-tls-verify" not in cluster
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == p.ca_pem()
    user = data["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == crt.read_bytes()
    assert base64.b64decode(user["client-key-data"]) == key.read_bytes()


def test_write_kubeconfig_token_and_names(tmp_path):
    p = PKI(tmp_path / "pki")
    path = write_kubeconfig(
        tmp_path / "t.conf",
        server="https://10.0.0.1:6443",
        ca_pem=p.ca_pem(),
        token="abc",
        context="c",
        cluster="cl",
        user="u",
        namespace="ns",
    )
    data = yaml.safe_load(path.read_text())
    assert data["users"] == [{"name": "u", "user": {"token": "abc"}}]
    assert data["contexts"] == [{"name": "c", "context": {"cluster": "cl", "user": "u", "namespace": "ns"}}]
    assert data["clusters"][0]["name"] == "cl"


def test_kubeconfig_loads_into_client_config(tmp_path):
    from apimachinery.kubeconfig import load_config

    p = PKI(tmp_path / "pki")
    crt, key = p.client_cert("admin", "kubernetes-admin", ["system:masters"])
    path = write_kubeconfig(
        tmp_path / "admin.conf", server="https://127.0.0.1:6443", ca_pem=p.ca_pem(), cert=(crt, key)
    )
    cfg = load_config(path)
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.ca_data and cfg.cert_data and cfg.key_data
    ctx = cfg.ssl_context()
    assert ctx is not True and ctx is not False


def test_serving_cert_for_clients_too_and_usage_change_reissues(tmp_path):
    p = PKI(tmp_path)
    crt, _ = p.serving_cert("etcd-1", ["10.0.0.2", "etcd-1"])
    serial = _cert(crt).serial_number
    p.serving_cert("etcd-1", ["10.0.0.2", "etcd-1"], client_auth=True)
    cert = _cert(crt)
    assert cert.serial_number != serial
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    p.serving_cert("etcd-1", ["10.0.0.2", "etcd-1"], client_auth=True)
    assert _cert(crt).serial_number == cert.serial_number


def test_self_signed_serving_cert_is_its_own_ca_and_reused_while_hosts_stay(tmp_path) -> None:
    crt, key = tmp_path / "k.crt", tmp_path / "k.key"
    hosts = ["10.0.0.5", "127.0.0.1", "node-1", "localhost"]
    assert pkimod.self_signed_serving_cert(crt, key, "node-1@1", hosts) == (crt, key)
    cert = _cert(crt)
    assert cert.issuer == cert.subject and subject_of(crt.read_bytes()) == ("node-1@1", ())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(cert)
    assert _mode(key) == 0o600
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"node-1", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("127.0.0.1"),
    }
    ssl.create_default_context().load_cert_chain(crt, key)  # the key is the certificate's
    pem = crt.read_bytes()
    # same hosts (another order, another CN): the files are kept
    pkimod.self_signed_serving_cert(crt, key, "node-1@2", list(reversed(hosts)))
    assert crt.read_bytes() == pem
    # another address: made again
    pkimod.self_signed_serving_cert(crt, key, "node-1@3", [*hosts, "10.0.0.6"])
    assert crt.read_bytes() != pem and subject_of(crt.read_bytes())[0] == "node-1@3"
    # near expiry: made again
    pem = crt.read_bytes()
    pkimod.self_signed_serving_cert(crt, key, "node-1@4", [*hosts, "10.0.0.6"], renew_within_days=400)
    assert crt.read_bytes() != pem


def test_self_signed_serving_cert_reads_its_hosts_once(tmp_path) -> None:
    crt, key = tmp_path / "k.crt", tmp_path / "k.key"
    pkimod.self_signed_serving_cert(crt, key, "node-1", (h for h in ["127.0.0.1", "node-1"]))
    san = _cert(crt).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node-1"]


def test_generate_certificate_self_signed_and_ca_signed() -> None:
    ca, ca_key = pkimod.generate_certificate("test-ca", days=1, ca=True)
    assert ca.issuer == ca.subject and ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.verify_directly_issued_by(ca)
    leaf, key = pkimod.generate_certificate(
        "web",
        ["web.example", "10.0.0.5"],
        organizations=["dev"],
        signed_by=(ca, ca_key),
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        backdate=dt.timedelta(hours=1),
    )
    leaf.verify_directly_issued_by(ca)
    assert leaf.issuer == ca.subject
    assert subject_of(leaf.public_bytes(serialization.Encoding.DER)) == ("web", ("dev",))
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=365, hours=1)
    store = Store([ca])
    for name in (DNSName("web.example"), IPAddress(ipaddress.ip_address("10.0.0.5"))):
        PolicyBuilder().store(store).build_server_verifier(name).verify(leaf, [])
    crt_pem, key_pem = pkimod.pem_pair(leaf, key)
    assert crt_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    no_cn, _ = pkimod.generate_certificate(None, organizations=["dev"])
    assert subject_of(no_cn.public_bytes(serialization.Encoding.DER)) == ("", ("dev",))
