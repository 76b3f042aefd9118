"""Authentication on a real ``minik-apiserver`` over HTTPS (real etcd): client certificates,
service-account tokens, anonymous requests, impersonation, WebSocket upgrades and the insecure port.

The server runs with certificates of a CA made here with ``apimachinery.pki`` and with the default
authorization (Node,RBAC and the bootstrap policy)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apimachinery.pki import PKI, write_kubeconfig
from testkit.host import free_port
from testkit.processes import BIN, EtcdProcess, Process
from testkit.wait import wait_for

ISSUER = "https://kubernetes.default.svc.cluster.local"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


class Server:
    """A minik-apiserver with a secure port (and an insecure one), its PKI and clients."""

    def __init__(self, etcd_url: str, directory: Path, *extra: str) -> None:
        self.pki = PKI(directory / "pki")
        self.pki.ensure_ca()
        self.port = free_port()
        self.insecure_port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        crt, key = self.pki.serving_cert("apiserver", ["127.0.0.1", "localhost"])
        sa_key, sa_pub = self.pki.service_account_keys()
        self.sa_key = sa_key
        self.process = Process(
            "apiserver",
            [
                str(BIN / "minik-apiserver"),
                *("--etcd-servers", etcd_url, "--etcd-wait-timeout", "20"),
                *("--secure-port", str(self.port), "--bind-address", "127.0.0.1"),
                *("--insecure-port", str(self.insecure_port)),
                *("--tls-cert-file", str(crt), "--tls-private-key-file", str(key)),
                *("--client-ca-file", str(self.pki.ca_cert)),
                *(
                    "--service-account-key-file",
                    str(sa_pub),
                    "--service-account-signing-key-file",
                    str(sa_key),
                ),
                *extra,
            ],
            directory / "apiserver.log",
        )

    def start(self) -> Server:
        self.process.start()
        ctx = self.ssl("admin", "kubernetes-admin", ("system:masters",))

        def ready() -> bool:
            if not self.process.running():
                raise RuntimeError(f"minik-apiserver exited:\n{self.process.log(4000)}")
            try:
                return httpx.get(f"{self.url}/readyz", verify=ctx, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=40, what="the API server to be ready")
        return self

    def ssl(self, file: str | None = None, user: str = "", groups: tuple[str, ...] = ()) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if file:
            crt, key = self.pki.client_cert(file, user, groups)
            ctx.load_cert_chain(str(crt), str(key))
        return ctx

    def client(self, ctx: ssl.SSLContext | None = None, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ctx or self.ssl(), timeout=20, **kw)

    def admin(self, **kw: Any) -> httpx.Client:
        return self.client(self.ssl("admin", "kubernetes-admin", ("system:masters",)), **kw)


@pytest.fixture(scope="module")
def server(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(etcd.url, tmp_path_factory.mktemp("authn"))
    try:
        yield s.start()
    finally:
        s.process.cleanup()


@pytest.fixture(scope="module")
def bot(server: Server) -> dict[str, Any]:
    """Service account ``default/bot``."""
    with server.admin() as c:
        r = c.post("/api/v1/namespaces/default/serviceaccounts", json={"metadata": {"name": "bot"}})
        assert r.status_code == 201, r.text
        return r.json()


def review(c: httpx.Client) -> dict[str, Any]:
    r = c.post(SSR, json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert r.status_code == 201, r.text
    return r.json()["status"]["userInfo"]


def is_unauthorized(r: httpx.Response) -> bool:
    body = r.json()
    return r.status_code == 401 and body["reason"] == "Unauthorized" and body["message"] == "Unauthorized"


# --- certificates -----------------------------------------------------------------------------------
def test_admin_certificate_is_kubernetes_admin(server: Server) -> None:
    with server.admin() as c:
        assert c.get("/api/v1/namespaces").status_code == 200
        who = review(c)
    assert who["username"] == "kubernetes-admin"
    assert who["groups"] == ["system:masters", "system:authenticated"]


def test_certificate_of_a_user(server: Server) -> None:
    with server.client(server.ssl("carol", "carol", ("qa", "dev"))) as c:
        r = c.get("/api/v1/namespaces/default/secrets")
    assert r.status_code == 403
    assert r.json()["message"] == (
        'secrets is forbidden: User "carol" cannot list resource "secrets" in API group "" '
        'in the namespace "default"'
    )


def test_certificate_of_an_unknown_ca_is_refused(server: Server, tmp_path: Path) -> None:
    other = PKI(tmp_path / "other")
    other.ensure_ca()
    crt, key = other.client_cert("mallory", "kubernetes-admin", ("system:masters",))
    ctx = server.ssl()
    ctx.load_cert_chain(str(crt), str(key))
    try:
        with server.client(ctx) as c:
            r = c.get("/api/v1/namespaces")
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return  # refused in the TLS handshake
    assert is_unauthorized(r)


def tls_handshake(server: Server, ctx: ssl.SSLContext) -> tuple[str, str]:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return cipher[0], str(tls.version())


def test_tls_versions_and_suites(server: Server) -> None:
    assert tls_handshake(server, server.ssl())[1] == "TLSv1.3"
    tls12 = server.ssl()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    suite, version = tls_handshake(server, tls12)
    assert version == "TLSv1.2" and suite.startswith("ECDHE-") and ("GCM" in suite or "CHACHA20" in suite)
    weak = server.ssl()
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("ECDHE-ECDSA-NULL-SHA:AECDH-AES128-SHA:ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        tls_handshake(server, weak)


def test_plain_http_on_the_secure_port_is_refused(server: Server) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/api/v1/namespaces", timeout=5).raise_for_status()


# --- anonymous ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/version"])
def test_anonymous_reads_health_and_version(server: Server, path: str) -> None:
    with server.client() as c:
        assert c.get(path).status_code == 200


def test_anonymous_is_forbidden_elsewhere(server: Server) -> None:
    with server.client() as c:
        r = c.get("/api/v1/namespaces")
    assert r.status_code == 403
    body = r.json()
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" '
        'in API group "" at the cluster scope'
    )
    assert body["details"] == {"kind": "namespaces"}


def test_anonymous_off_is_401(etcd: EtcdProcess, tmp_path: Path) -> None:
    s = Server(etcd.url, tmp_path, "--anonymous-auth=false")
    try:
        s.start()
        with s.client() as c:
            assert is_unauthorized(c.get("/api/v1/namespaces"))
            assert is_unauthorized(c.get("/healthz"))
        with s.admin() as c:
            assert c.get("/healthz").status_code == 200
    finally:
        s.process.cleanup()


# --- bearer tokens ----------------------------------------------------------------------------------
def request_token(server: Server, name: str = "bot", **spec: Any) -> str:
    with server.admin() as c:
        r = c.post(
            f"/api/v1/namespaces/default/serviceaccounts/{name}/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "TokenRequest"
    return str(r.json()["status"]["token"])


def bearer(server: Server, token: str) -> httpx.Client:
    return server.client(headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("token", ["junk", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_bad_token_is_401(server: Server, token: str) -> None:
    with bearer(server, token) as c:
        assert is_unauthorized(c.get("/api/v1/namespaces"))
        assert is_unauthorized(c.get("/healthz"))  # a bad credential never falls back to anonymous


def test_service_account_token_authenticates(server: Server, bot: dict[str, Any]) -> None:
    token = request_token(server)
    with bearer(server, token) as c:
        assert c.get("/version").status_code == 200
        r = c.get("/api/v1/namespaces/default/secrets")
    assert r.status_code == 403
    assert 'User "system:serviceaccount:default:bot" cannot list' in r.json()["message"]
    with server.admin() as c:
        r = c.post(TOKEN_REVIEWS, json={"kind": "TokenReview", "spec": {"token": token}})
    assert r.status_code == 201
    status = r.json()["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:serviceaccount:default:bot"
    assert status["user"]["uid"] == bot["metadata"]["uid"]
    assert "system:serviceaccounts:default" in status["user"]["groups"]


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_forged_token_is_401(server: Server, bot: dict[str, Any]) -> None:
    claims = claims_of(request_token(server))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256")
    with bearer(server, forged) as c:
        assert is_unauthorized(c.get("/version"))


def test_expired_token_is_401(server: Server, bot: dict[str, Any]) -> None:
    claims = claims_of(request_token(server))
    now = int(time.time())
    claims.update(iat=now - 7200, nbf=now - 7200, exp=now - 3600, jti=str(uuid.uuid4()))
    key = serialization.load_pem_private_key(Path(server.sa_key).read_bytes(), password=None)
    expired = jwt.encode(claims, key, algorithm="RS256")  # type: ignore[arg-type]
    with bearer(server, expired) as c:
        assert is_unauthorized(c.get("/version"))


def test_token_for_another_audience_is_401(server: Server, bot: dict[str, Any]) -> None:
    token = request_token(server, audiences=["vault"], expirationSeconds=600)
    assert claims_of(token)["aud"] == ["vault"]
    with bearer(server, token) as c:
        assert is_unauthorized(c.get("/version"))


def test_token_dies_with_its_service_account(server: Server) -> None:
    with server.admin() as c:
        assert c.post(
            "/api/v1/namespaces/default/serviceaccounts", json={"metadata": {"name": "tmp"}}
        ).is_success
    token = request_token(server, "tmp")
    with bearer(server, token) as c:
        assert c.get("/version").status_code == 200
    with server.admin() as c:
        assert c.delete("/api/v1/namespaces/default/serviceaccounts/tmp").is_success
    with bearer(server, token) as c:
        wait_for(lambda: c.get("/version").status_code == 401, timeout=10, what="the token to be refused")


def test_token_bound_to_a_pod_dies_with_the_pod(server: Server, bot: dict[str, Any]) -> None:
    pod = {
        "metadata": {"name": "bound"},
        "spec": {"serviceAccountName": "bot", "containers": [{"name": "c", "image": "busybox"}]},
    }
    with server.admin() as c:
        r = c.post("/api/v1/namespaces/default/pods", json=pod)
        assert r.status_code == 201, r.text
        uid = r.json()["metadata"]["uid"]
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "bound", "uid": uid}
    token = request_token(server, boundObjectRef=ref)
    assert claims_of(token)["kubernetes.io"]["pod"] == {"name": "bound", "uid": uid}
    with bearer(server, token) as c:
        assert c.get("/version").status_code == 200
    with server.admin() as c:
        c.delete("/api/v1/namespaces/default/pods/bound", params={"gracePeriodSeconds": "0"})
    with bearer(server, token) as c:
        wait_for(lambda: c.get("/version").status_code == 401, timeout=10, what="the token to be refused")


def test_token_request_validation(server: Server, bot: dict[str, Any]) -> None:
    with server.admin() as c:
        r = c.post(
            "/api/v1/namespaces/default/serviceaccounts/bot/token",
            json={
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "spec": {"expirationSeconds": 60},
            },
        )
        assert r.status_code == 422
        assert r.json()["details"]["causes"][0]["field"] == "spec.expirationSeconds"
        r = c.post("/api/v1/namespaces/default/serviceaccounts/nobody/token", json={"spec": {}})
        assert r.status_code == 404


def test_reviews_are_never_stored(server: Server) -> None:
    with server.admin() as c:
        r = c.post(TOKEN_REVIEWS, json={"metadata": {"name": "x"}, "spec": {"token": "junk"}})
        assert r.status_code == 201
        assert r.json()["status"].get("authenticated") is not True
        assert c.get(TOKEN_REVIEWS).status_code == 405
        assert c.get(f"{TOKEN_REVIEWS}/x").status_code in (404, 405)
        assert review(c)["username"] == "kubernetes-admin"
        assert c.get(SSR).status_code == 405


def test_service_account_issuer_discovery(server: Server) -> None:
    with server.admin() as c:
        config = c.get("/.well-known/openid-configuration").json()
        keys = c.get("/openid/v1/jwks").json()["keys"]
    assert config["issuer"] == ISSUER and config["jwks_uri"] == f"{ISSUER}/openid/v1/jwks"
    token = request_token(server, audiences=["vault"], expirationSeconds=600)
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == jwt.get_unverified_header(token)["kid"]))
    assert jwt.decode(token, key.key, algorithms=["RS256"], audience="vault")["iss"] == ISSUER


# --- impersonation ----------------------------------------------------------------------------------
def test_admin_impersonates_a_user_and_group(server: Server) -> None:
    with server.admin(headers={"Impersonate-User": "alice", "Impersonate-Group": "team"}) as c:
        r = c.get("/api/v1/namespaces/default/secrets")
        assert r.status_code == 403
        assert 'User "alice" cannot list resource "secrets"' in r.json()["message"]


def test_impersonation_needs_the_impersonate_verb(server: Server) -> None:
    with server.client(
        server.ssl("dave", "dave", ("dev",)), headers={"Impersonate-User": "kubernetes-admin"}
    ) as c:
        r = c.get("/api/v1/namespaces")
    assert r.status_code == 403
    assert r.json()["message"] == (
        'users "kubernetes-admin" is forbidden: User "dave" cannot impersonate resource "users" '
        'in API group "" at the cluster scope'
    )


def test_kubectl_as(server: Server, tmp_path: Path) -> None:
    crt, key = server.pki.client_cert("admin", "kubernetes-admin", ("system:masters",))
    kubeconfig = write_kubeconfig(
        tmp_path / "admin.conf", server=server.url, ca_pem=server.pki.ca_pem(), cert=(crt, key)
    )
    run = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "auth", "whoami", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"]["userInfo"]["username"] == "kubernetes-admin"
    run = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "get", "secrets", "--as", "alice", "--as-group", "team"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert 'User "alice" cannot list resource "secrets"' in run.stderr


# --- WebSocket upgrades and the insecure port -------------------------------------------------------
def websocket_status(server: Server, ctx: ssl.SSLContext, headers: dict[str, str]) -> int:
    url = f"wss://127.0.0.1:{server.port}/api/v1/namespaces/default/pods/nope/exec?command=sh&stdout=1"

    async def attempt() -> int:
        try:
            async with websockets.connect(
                url,
                ssl=ctx,
                additional_headers=headers,
                subprotocols=["v4.channel.k8s.io"],  # type: ignore[list-item]
            ):
                return 101
        except websockets.InvalidStatus as e:
            return int(e.response.status_code)

    return asyncio.run(attempt())


def test_websocket_exec_is_authenticated_and_authorized(server: Server) -> None:
    assert websocket_status(server, server.ssl(), {"Authorization": "Bearer junk"}) == 401
    assert websocket_status(server, server.ssl(), {}) == 403
    # the admin passes both; the pod does not exist, so the relay closes the connection
    assert websocket_status(server, server.ssl("admin", "kubernetes-admin", ("system:masters",)), {}) == 101


def test_insecure_port_is_loopback_without_authentication(server: Server) -> None:
    r = httpx.get(f"http://127.0.0.1:{server.insecure_port}/api/v1/namespaces", timeout=10)
    assert r.status_code == 200
