"""The GitHub Action's pure parts: its inputs, where minik is installed from, which Debian packages
it adds, the ``minik up`` arguments it builds, the runner files it appends to, and that
``action.yml`` passes every input its script reads (tests/e2e/test_action.py runs the script)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_action() -> ModuleType:
    spec = importlib.util.spec_from_file_location("minik_action", ROOT / "action" / "minik_action.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["minik_action"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


A = load_action()


def test_defaults_are_one_node_waiting_two_minutes_with_the_runners_kubectl() -> None:
    i = A.parse_inputs({})
    assert (i.version, i.nodes, i.images, i.wait, i.kubectl_version, i.install_only) == (
        "",
        1,
        [],
        120.0,
        "",
        False,
    )
    assert i.up_args == [] and i.python == "python3"


def test_inputs_as_a_runner_passes_them() -> None:
    i = A.parse_inputs(
        {
            "INPUT_VERSION": " 0.2.0 ",
            "INPUT_NODES": "3",
            "INPUT_IMAGES": "hello:1, web:2\nworker:3",
            "INPUT_WAIT": "1m30s",
            "INPUT_KUBECTL_VERSION": "v1.36.4",
            "INPUT_INSTALL_ONLY": "TRUE",
            "INPUT_UP_ARGS": "--project ci --api-port 18480",
        }
    )
    assert i.version == "0.2.0" and i.nodes == 3
    assert i.images == ["hello:1", "web:2", "worker:3"]
    assert i.wait == 90.0 and i.kubectl_version == "1.36.4" and i.install_only is True
    assert i.up_args == ["--project", "ci", "--api-port", "18480"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("45", 45.0), ("45s", 45.0), ("2m", 120.0), ("1h", 3600.0), ("1m5s", 65.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert A.parse_duration("wait", text) == seconds


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INPUT_WAIT": "soon"}, "input wait must be a duration"),
        ({"INPUT_NODES": "two"}, "input nodes must be a number"),
        ({"INPUT_NODES": "0"}, "between 1 and 50"),
        ({"INPUT_INSTALL_ONLY": "maybe"}, "input install_only must be true or false"),
        ({"INPUT_UP_ARGS": "--timeout 5"}, "must not set --timeout"),
        ({"INPUT_NODES": "2", "INPUT_UP_ARGS": "--nodes=4"}, "must not set --nodes"),
        ({"INPUT_UP_ARGS": "--node-name 'a"}, "cannot be split"),
    ],
)
def test_bad_inputs_say_which_and_why(env: dict[str, str], message: str) -> None:
    with pytest.raises(A.ActionError, match=message):
        A.parse_inputs(env)


def test_minik_comes_from_the_actions_checkout_pypi_or_a_git_ref() -> None:
    one = A.parse_inputs({})
    assert A.install_source(one, "/a/path", "o/minik").pip_args == ["-e", "/a/path"]
    release = A.parse_inputs({"INPUT_VERSION": "v1.2.3"})
    assert A.install_source(release, "/a/path", "o/minik").pip_args == ["minik==1.2.3"]
    ref = A.install_source(A.parse_inputs({"INPUT_VERSION": "main"}), "/a/path", "o/minik")
    assert (ref.git_url, ref.git_ref) == ("https://github.com/o/minik", "main")


@pytest.mark.parametrize("ref", ["v1", "1", "2024", "main", "v1.2", "abc1234"])
def test_short_tags_and_shas_are_git_refs_not_releases(ref: str) -> None:
    source = A.install_source(A.parse_inputs({"INPUT_VERSION": ref}), "/a/path", "o/minik")
    assert (source.pip_args, source.git_ref) == ([], ref)


def test_the_repository_of_an_action_used_from_elsewhere_comes_from_its_path() -> None:
    # inside a composite action github.action_repository is empty; the checkout path names it
    path = "/home/runner/work/_actions/someone/minik/v1"
    source = A.install_source(A.parse_inputs({"INPUT_VERSION": "v1"}), path, "")
    assert (source.git_url, source.git_ref) == ("https://github.com/someone/minik", "v1")


def test_a_git_ref_needs_the_actions_repository_and_the_lab_needs_a_checkout() -> None:
    with pytest.raises(A.ActionError, match="not used from a repository"):
        A.install_source(A.parse_inputs({"INPUT_VERSION": "feature/x"}), "/a/path", "")
    lab_release = A.parse_inputs({"INPUT_VERSION": "1.0.0", "INPUT_NODES": "2"})
    with pytest.raises(A.ActionError, match="builds its images from a checkout"):
        A.install_source(lab_release, "/a/path", "o/minik")


def facts(**overrides: Any) -> Any:
    base = dict(
        docker_answers=True,
        dockerd_installed=True,
        busybox_static=True,
        iptables=True,
        compose=True,
        apt=True,
    )
    return A.HostFacts(**{**base, **overrides})


def test_the_docker_engine_is_installed_only_where_none_answers_or_is_installed() -> None:
    assert A.apt_packages(facts(), 1) == []
    assert A.apt_packages(facts(docker_answers=False), 1) == []  # installed, not running: started instead
    assert A.apt_packages(facts(docker_answers=False, dockerd_installed=False), 1) == ["docker.io"]
    assert A.apt_packages(facts(busybox_static=False, iptables=False), 1) == ["iptables", "busybox-static"]
    assert A.apt_packages(facts(compose=False), 1) == []
    assert A.apt_packages(facts(compose=False), 3) == ["docker-compose"]
    # minik up's pod network: the CNI plugins and conntrack (a lab's nodes have them in their image)
    assert A.apt_packages(facts(cni_plugins=False, conntrack=False), 1) == [
        "containernetworking-plugins",
        "conntrack",
    ]
    assert A.apt_packages(facts(cni_plugins=False, conntrack=False), 3) == []
    assert A.apt_packages(facts(apt=False, docker_answers=False, dockerd_installed=False), 1) == []


def test_plan_for_one_node_keeps_a_state_dir_given_in_up_args(tmp_path: Path) -> None:
    inputs = A.parse_inputs({"INPUT_WAIT": "30s", "INPUT_UP_ARGS": "--state-dir=/s --api-port 18080"})
    record, args = A.plan(inputs, tmp_path)
    assert record.mode == "single" and record.state == "/s"
    assert record.venv == str(tmp_path / "minik" / "venv")
    assert record.kubeconfig == str(tmp_path / "minik" / "kubeconfig")
    assert args == ["up", "--state-dir", "/s", "--timeout", "30", "--api-port", "18080"]
    default, _ = A.plan(A.parse_inputs({}), tmp_path)
    assert default.state == str(tmp_path / "minik" / "state")


def test_plan_for_the_lab_remembers_its_project_for_down_and_image_load(tmp_path: Path) -> None:
    inputs = A.parse_inputs({"INPUT_NODES": "3", "INPUT_UP_ARGS": "--project ci"})
    record, args = A.plan(inputs, tmp_path)
    assert record.mode == "lab" and record.lab_args == ["--project", "ci"]
    assert args[:7] == ["lab", "up", "--nodes", "3", "--timeout", "120", "--keep-on-failure"]
    assert args[7:] == ["--base", "python:3.11-slim", "--project", "ci"]


def test_runner_files_get_one_line_per_entry(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("earlier=1\n")
    env = {"GITHUB_OUTPUT": str(out)}
    A.runner_file(env, "GITHUB_OUTPUT", ["kubeconfig=/k", "api-server=http://127.0.0.1:1"])
    assert out.read_text() == "earlier=1\nkubeconfig=/k\napi-server=http://127.0.0.1:1\n"
    with pytest.raises(ValueError, match="one line per entry"):
        A.runner_file(env, "GITHUB_OUTPUT", ["x=a\nb"])


def test_the_record_survives_for_cleanup(tmp_path: Path) -> None:
    env = {"RUNNER_TEMP": str(tmp_path)}
    assert A.read_record(env) is None
    record, _ = A.plan(A.parse_inputs({"INPUT_NODES": "2"}), tmp_path)
    A.write_record(env, record)
    assert A.read_record(env) == record


def test_action_yml_is_a_composite_action_passing_every_input_its_script_reads() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["name"] and action["description"]
    assert action["runs"]["using"] == "composite"
    [step] = [s for s in action["runs"]["steps"] if s.get("id") == "minik"]
    assert step["shell"] == "bash"
    script = (ROOT / "action" / "minik_action.py").read_text()
    inputs = {f"INPUT_{n}" for n in re.findall(r'(?<![.\w])get\("([A-Z_]+)"', script)}
    inputs |= set(re.findall(r'"(INPUT_[A-Z_]+)"', script)) - {"INPUT_COLLECT_LOGS"}  # the clean-up's
    action_vars = set(re.findall(r'env\.get\("(MINIK_ACTION_[A-Z_]+)"', script))
    assert len(inputs) == 9 and action_vars == {"MINIK_ACTION_PATH", "MINIK_ACTION_REPOSITORY"}
    assert inputs | action_vars <= set(step["env"]), (inputs | action_vars) - set(step["env"])
    for var, value in step["env"].items():
        if var.startswith("INPUT_"):
            name = re.fullmatch(r"\$\{\{ inputs\.([\w-]+) \}\}", value)
            assert name and name.group(1) in action["inputs"], (var, value)
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.minik.outputs.{name} }}}}"
        assert f'"{name}=' in script or f'f"{name}=' in script or f"{name}={{" in script, name


def test_cleanup_action_runs_the_same_script() -> None:
    cleanup = yaml.safe_load((ROOT / "action" / "cleanup" / "action.yml").read_text())
    assert cleanup["runs"]["using"] == "composite"
    step = cleanup["runs"]["steps"][0]
    assert step["run"].endswith('/../minik_action.py" cleanup')
    assert step["env"]["INPUT_COLLECT_LOGS"] == "${{ inputs.collect-logs }}"
