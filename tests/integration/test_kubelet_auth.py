"""The kubelet's API is authenticated and authorized (real API server, kubelet and Docker).

Without credentials every path of the HTTPS port is 401 (exec, run, pods, logs, WebSocket upgrades);
a user whose certificate the kubelet accepts but who has no ``nodes/proxy`` permission is 403 (the
kubelet asks the API server with a SubjectAccessReview); a bearer token is checked with a
TokenReview; ``kubectl exec`` and ``kubectl logs`` through the API server (its kubelet client
certificate) keep working; ``/healthz`` alone is served in plain HTTP, on loopback.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import certs
from testkit.processes import APIServerProcess, EtcdProcess, KubeletProcess
from tests.integration.test_kubelet import make_pod, wait_phase
from tests.integration.test_pod_log_exec import kubectl

pytestmark = pytest.mark.usefixtures("kubectl_bin")

POD = "kauth"


@pytest.fixture(scope="module")
def running_pod(apiserver: APIServerProcess, kubelet: KubeletProcess, image: str) -> Iterator[str]:
    assert kubelet.url.startswith("https://"), "the harness runs the kubelet without TLS"
    script = "echo hello from the kubelet test; exec sleep 3600"
    containers = [{"name": "main", "image": image, "command": ["sh", "-c", script]}]
    # no service-account volume: this module runs no controller manager to publish kube-root-ca.crt
    pod = make_pod(POD, kubelet.node, containers, automountServiceAccountToken=False)
    with apiserver.http() as c:
        r = c.post("/api/v1/namespaces/default/pods", json=pod)
        assert r.status_code == 201, r.text
        wait_phase(kubelet, c, POD, "Running")
        try:
            yield POD
        finally:
            c.delete(f"/api/v1/namespaces/default/pods/{POD}", params={"gracePeriodSeconds": "0"})


def anonymous_context() -> ssl.SSLContext:
    """Trusts the cluster CA, presents no certificate."""
    return ssl.create_default_context(cafile=str(certs.ca_file()))


def user_context(user: str, groups: tuple[str, ...] = ()) -> ssl.SSLContext:
    return certs.ssl_context(certs.user_cert(user, groups))


def ws_status(kubelet: KubeletProcess, path: str, context: ssl.SSLContext, **kw: Any) -> tuple[int, str]:
    """(HTTP status, body) of a WebSocket upgrade on the kubelet (101 when accepted)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def go() -> tuple[int, str]:
        try:
            async with connect(
                kubelet.ws_url(path), ssl=context, subprotocols=["v5.channel.k8s.io"], **kw
            ) as ws:
                first = await asyncio.wait_for(ws.recv(), 30)
                return 101, first.decode(errors="replace") if isinstance(first, bytes) else first
        except InvalidStatus as e:
            return e.response.status_code, (e.response.body or b"").decode()

    return asyncio.run(go())


def exec_path(pod: str, *command: str) -> str:
    return f"/exec/default/{pod}/main?" + "&".join(f"command={c}" for c in command) + "&stdout=1"


def test_no_credentials_no_access(kubelet: KubeletProcess, running_pod: str) -> None:
    with httpx.Client(base_url=kubelet.url, verify=anonymous_context(), timeout=30) as c:
        for method, path in [
            ("POST", f"/run/default/{running_pod}/main?cmd=id"),
            ("GET", "/pods"),
            ("GET", f"/containerLogs/default/{running_pod}/main"),
            ("GET", "/stats/summary"),
            ("GET", "/healthz"),
        ]:
            r = c.request(method, path)
            assert (r.status_code, r.text) == (401, "Unauthorized"), (method, path)
        # a forged bearer token is no better (checked by a TokenReview)
        r = c.post(f"/run/default/{running_pod}/main?cmd=id", headers={"Authorization": "Bearer forged"})
        assert r.status_code == 401
    code, body = ws_status(kubelet, exec_path(running_pod, "id"), anonymous_context())
    assert (code, body) == (401, "Unauthorized")
    # the API is not served in plain HTTP at all
    with pytest.raises(httpx.HTTPError):
        httpx.post(kubelet.url.replace("https://", "http://") + f"/run/default/{running_pod}/main?cmd=id")


def test_healthz_alone_in_plain_http(kubelet: KubeletProcess) -> None:
    base = f"http://127.0.0.1:{kubelet.healthz_port}"
    assert httpx.get(f"{base}/healthz").text == "ok"
    assert httpx.post(f"{base}/run/default/{POD}/main?cmd=id").status_code == 404
    assert httpx.get(f"{base}/pods").status_code == 404


def test_user_without_nodes_proxy_is_forbidden(kubelet: KubeletProcess, running_pod: str) -> None:
    ctx = user_context("kubelet-test-mallory")
    with httpx.Client(base_url=kubelet.url, verify=ctx, timeout=30) as c:
        r = c.post(f"/run/default/{running_pod}/main?cmd=id")
        assert r.status_code == 403
        assert r.text == (
            "Forbidden (user=kubelet-test-mallory, verb=create, resource=nodes, subresource=proxy)"
        )
        r = c.get("/stats/summary")
        assert r.status_code == 403 and "subresource=stats" in r.text
    code, body = ws_status(kubelet, exec_path(running_pod, "id"), ctx)
    assert code == 403 and "verb=create" in body


def test_granted_user_and_service_account_token(
    apiserver: APIServerProcess, kubelet: KubeletProcess, running_pod: str
) -> None:
    """A user bound to a ClusterRole with nodes/proxy runs commands; of two service accounts'
    tokens (checked by TokenReview), the bound one's is allowed, the other's refused."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubelet-test-node-proxy"},
        "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get", "create"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubelet-test-node-proxy"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "kubelet-test-node-proxy",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubelet-test-olivia"},
            {"kind": "ServiceAccount", "name": "kubelet-test-allowed", "namespace": "default"},
        ],
    }
    with apiserver.http() as api:
        assert api.post(f"{rbac}/clusterroles", json=role).status_code == 201
        assert api.post(f"{rbac}/clusterrolebindings", json=binding).status_code == 201
        tokens = {}
        for name in ("kubelet-test-allowed", "kubelet-test-refused"):
            sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
            assert api.post("/api/v1/namespaces/default/serviceaccounts", json=sa).status_code in (201, 409)
            r = api.post(
                f"/api/v1/namespaces/default/serviceaccounts/{name}/token",
                json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
            )
            assert r.status_code == 201, r.text
            tokens[name] = r.json()["status"]["token"]

    def run_as(**kw: Any) -> httpx.Response:
        with httpx.Client(base_url=kubelet.url, timeout=30, **kw) as c:
            return c.post(f"/run/default/{running_pod}/main", params={"cmd": "echo ran"})

    def allowed(**kw: Any) -> httpx.Response | None:
        r = run_as(**kw)
        return r if r.status_code == 200 else None

    # the API server's authorizer follows the new binding through its watch
    r = kubelet.wait(
        lambda: allowed(verify=user_context("kubelet-test-olivia")), 30, "the bound user allowed"
    )
    assert r.text.strip() == "ran"
    code, _ = ws_status(kubelet, exec_path(running_pod, "echo", "hi"), user_context("kubelet-test-olivia"))
    assert code == 101
    r = run_as(
        verify=anonymous_context(), headers={"Authorization": f"Bearer {tokens['kubelet-test-allowed']}"}
    )
    assert r.status_code == 200 and r.text.strip() == "ran", r.text
    r = run_as(
        verify=anonymous_context(), headers={"Authorization": f"Bearer {tokens['kubelet-test-refused']}"}
    )
    assert r.status_code == 403
    assert r.text.startswith("Forbidden (user=system:serviceaccount:default:kubelet-test-refused,"), r.text


def test_kubectl_exec_and_logs_through_the_api_server(kubeconfig: str, running_pod: str) -> None:
    r = kubectl(kubeconfig, "exec", running_pod, "--", "sh", "-c", "echo $((6*7))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"
    r = kubectl(kubeconfig, "logs", running_pod)
    assert r.returncode == 0, r.stderr
    assert "hello from the kubelet test" in r.stdout


def test_api_server_whose_kubelet_credentials_are_refused(
    etcd: EtcdProcess, kubelet: KubeletProcess, running_pod: str, tmp_path: Path
) -> None:
    """A second API server presenting a certificate without nodes/proxy: the kubelet's 403 comes
    back to kubectl in the kubelet's words, for logs and for exec."""
    crt, key = certs.user_cert("kubelet-test-weak-apiserver")
    other = APIServerProcess(etcd.url)
    try:
        other.start(extra=["--kubelet-client-certificate", str(crt), "--kubelet-client-key", str(key)])
        kubeconfig = tmp_path / "config"
        shutil.copy(other.kubeconfig, kubeconfig)
        r = kubectl(str(kubeconfig), "logs", running_pod)
        assert r.returncode != 0
        assert (
            "Forbidden (user=kubelet-test-weak-apiserver, verb=get, resource=nodes, subresource=proxy)"
            in r.stderr
        )
        r = kubectl(str(kubeconfig), "exec", running_pod, "--", "echo", "hi")
        assert r.returncode != 0 and "hi" not in r.stdout
        assert "Forbidden (user=kubelet-test-weak-apiserver, verb=create" in r.stderr, r.stderr
    finally:
        other.cleanup()


def test_self_signed_serving_certificate(apiserver: APIServerProcess, image: str) -> None:
    """Without --tls-cert-file the kubelet serves a certificate it made in ROOT-DIR/pki (naming its
    node IP), still refuses callers without credentials, and keeps the same certificate across a
    restart."""
    k = KubeletProcess(apiserver)
    i = k.argv.index("--tls-cert-file")
    del k.argv[i : i + 4]  # --tls-cert-file X --tls-private-key-file Y
    assert "--tls-private-key-file" not in k.argv
    try:
        k.start()
        made = Path(k.root) / "root" / "pki" / "kubelet.crt"
        assert (made.parent / "kubelet.key").stat().st_mode & 0o777 == 0o600
        served = ssl.get_server_certificate(("127.0.0.1", k.port))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(made.read_text())
        # the certificate is its own CA and names 127.0.0.1: verification with it succeeds
        ctx = ssl.create_default_context(cafile=str(made))
        r = httpx.get(f"https://127.0.0.1:{k.port}/pods", verify=ctx)
        assert (r.status_code, r.text) == (401, "Unauthorized")
        k.stop()
        k.start()
        again = ssl.get_server_certificate(("127.0.0.1", k.port))
        assert ssl.PEM_cert_to_DER_cert(again) == ssl.PEM_cert_to_DER_cert(served)
    finally:
        k.cleanup()
