"""Pod Security Standards checks (apiserver/podsecurity.py): Kubernetes' reasons and wording."""

from __future__ import annotations

from typing import Any

from apiserver import podsecurity as ps


def spec(**kw: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "busybox", **kw.pop("container", {})}
    return {"containers": [container], **kw}


RESTRICTED_OK = spec(
    securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    container={"securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}},
)


def test_plain_pod_passes_baseline_not_restricted() -> None:
    assert ps.evaluate("baseline", {}, spec()) == []
    assert ps.evaluate("privileged", {}, spec(hostNetwork=True)) == []
    assert ps.evaluate("restricted", {}, spec()) == [
        'allowPrivilegeEscalation != false (container "main" must set securityContext.allowPrivilegeEscalation=false)',
        'unrestricted capabilities (container "main" must set securityContext.capabilities.drop=["ALL"])',
        'runAsNonRoot != true (pod or container "main" must set securityContext.runAsNonRoot=true)',
        'seccompProfile (pod or container "main" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
    ]
    assert ps.evaluate("restricted", {}, RESTRICTED_OK) == []


def test_baseline_reasons() -> None:
    bad = spec(
        hostNetwork=True,
        hostPID=True,
        volumes=[{"name": "root", "hostPath": {"path": "/"}}, {"name": "etc", "hostPath": {"path": "/etc"}}],
        securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
        container={
            "ports": [{"containerPort": 80, "hostPort": 8080}],
            "securityContext": {
                "privileged": True,
                "capabilities": {"add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"]},
                "procMount": "Unmasked",
                "seccompProfile": {"type": "Unconfined"},
                "seLinuxOptions": {"type": "spc_t", "user": "root"},
            },
        },
    )
    assert ps.evaluate("baseline", {}, bad) == [
        'non-default capabilities (container "main" must not include "NET_ADMIN", "SYS_ADMIN" in securityContext.capabilities.add)',
        "host namespaces (hostNetwork=true, hostPID=true)",
        'hostPath volumes (volumes "root", "etc")',
        'hostPort (container "main" uses hostPort 8080)',
        'privileged (container "main" must not set securityContext.privileged=true)',
        'procMount (container "main" must not set securityContext.procMount to "Unmasked")',
        'seLinuxOptions (container "main" set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set)',
        'seccompProfile (container "main" must not set securityContext.seccompProfile.type to "Unconfined")',
        "forbidden sysctls (kernel.msgmax)",
    ]


def test_restricted_overrides_and_volume_types() -> None:
    s = spec(
        securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}, "runAsUser": 0},
        volumes=[{"name": "data", "nfs": {"server": "x", "path": "/"}}, {"name": "tmp", "emptyDir": {}}],
        container={
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_TIME"]},
            }
        },
    )
    reasons = ps.evaluate("restricted", {}, s)
    # restricted replaces the baseline capabilities check with its own
    assert not any(r.startswith("non-default capabilities") for r in reasons)
    assert reasons == [
        'unrestricted capabilities (container "main" must not include "SYS_TIME" in securityContext.capabilities.add)',
        'restricted volume types (volume "data" uses restricted volume type "nfs")',
        "runAsUser=0 (pod must not set runAsUser=0)",
    ]


def test_explicit_false_run_as_non_root_and_apparmor() -> None:
    s = spec(
        securityContext={"runAsNonRoot": False, "appArmorProfile": {"type": "Unconfined"}},
        container={"securityContext": {"runAsNonRoot": False}},
    )
    assert ps.check_run_as_non_root({}, s) == (
        "runAsNonRoot != true",
        'pod and container "main" must not set securityContext.runAsNonRoot=false',
    )
    assert ps.check_apparmor({}, s) == (
        "forbidden AppArmor profile",
        'pod must not set AppArmor profile type to "Unconfined"',
    )


def test_namespace_policy_and_labels() -> None:
    labels = {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.30",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    policy = ps.namespace_policy(labels)
    assert policy["enforce"] == ("baseline", "v1.30")
    assert policy["warn"] == ("restricted", "latest")
    assert policy["audit"] == ("privileged", "latest")
    assert ps.validate_namespace_labels(labels) == []
    assert ps.validate_namespace_labels({"pod-security.kubernetes.io/enforce": "strict"}) == [
        ("pod-security.kubernetes.io/enforce", "strict", "must be one of privileged, baseline, restricted")
    ]
    # an unparsable level is enforced as restricted
    assert ps.namespace_policy({"pod-security.kubernetes.io/enforce": "strict"})["enforce"][0] == "restricted"


def test_pod_spec_of_templates() -> None:
    deploy = {"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"hostPID": True}}}}
    assert ps.pod_spec_of("apps", "Deployment", deploy) == ({"labels": {"a": "b"}}, {"hostPID": True})
    cron = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostIPC": True}}}}}}
    assert ps.pod_spec_of("batch", "CronJob", cron) == ({}, {"hostIPC": True})
    assert ps.pod_spec_of("", "ConfigMap", {}) is None


def test_restricted_lists_baseline_reasons_first() -> None:
    s = spec(
        volumes=[{"name": "root", "hostPath": {"path": "/"}}],
        container={
            "ports": [{"containerPort": 1, "hostPort": 9000}, {"containerPort": 2, "hostPort": 10000}],
            "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}},
            "securityContext": {"privileged": True},
        },
    )
    s["containers"].append({"name": "side", "ports": [{"containerPort": 3, "hostPort": 9000}]})
    reasons = ps.evaluate("restricted", {}, s)
    assert reasons[:3] == [
        'hostPort (containers "main", "side" use hostPorts 10000, 9000)',
        'probe or lifecycle host (container "main" uses probe or lifecycle host "10.0.0.1")',
        'privileged (container "main" must not set securityContext.privileged=true)',
    ]
    assert reasons[3].startswith("allowPrivilegeEscalation != false")
    assert 'restricted volume types (volume "root" uses restricted volume type "hostPath")' in reasons
    assert not any(r.startswith("hostPath volumes") for r in reasons)
    assert ps.evaluate("baseline", {}, s)[0] == 'hostPath volumes (volume "root")'


def test_user_namespace_and_windows_relaxations() -> None:
    userns = {
        **RESTRICTED_OK,
        "hostUsers": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }
    assert ps.evaluate("restricted", {}, userns) == []
    assert ps.check_run_as_non_root({}, {**spec(), "hostUsers": False}) is None
    assert ps.check_seccomp_baseline({}, spec(securityContext={"seccompProfile": {"type": "Bogus"}})) == (
        "seccompProfile",
        'pod must not set securityContext.seccompProfile.type to "Bogus"',
    )
