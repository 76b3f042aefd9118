"""What ``minik`` imports to start a command (the import set, never a time), its command table and
``minik version``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from apimachinery.version import __version__
from cli.kube import GlobalOptions
from cli.main import COMMANDS, app, load_command

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

# Run `minik ARGS` in a fresh interpreter, then report every module it had imported.
_PROBE = textwrap.dedent(
    """
    import json, os, sys
    from cli.main import main
    sys.argv = ["minik", *json.loads(sys.argv[1])]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump({"code": code, "modules": sorted(sys.modules)}, f)
    """
)

# Never needed to print a version or list pods: the local cluster's code, Docker, the other verbs,
# rich's tables.
NOT_FOR_ANY_VERB = {
    "cli.cluster",
    "cli.lab",
    "cli.supervisor",
    "docker",
    "rich.table",
    "websockets",
    "cli.commands.apply",
    "cli.commands.describe",
    "cli.commands.rollout",
    "cli.streams",
}


def started(args: list[str], tmp_path: Path) -> tuple[int, set[str], str]:
    """``minik ARGS`` in a subprocess: its exit code, the modules it imported, its stdout."""
    out = tmp_path / "probe.json"
    env = {
        **os.environ,
        "PROBE_OUT": str(out),
        "KUBECONFIG": str(tmp_path / "absent-kubeconfig"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.exists(), proc.stderr
    report = json.loads(out.read_text())
    return int(report["code"] or 0), set(report["modules"]), proc.stdout


def test_version_client_imports_no_client_library_or_other_command(tmp_path: Path) -> None:
    code, modules, stdout = started(["version", "--client"], tmp_path)
    assert code == 0
    assert stdout == f"Client Version: v{__version__}\n"
    assert "cli.commands.version" in modules
    unexpected = (NOT_FOR_ANY_VERB | {"httpx", "httpcore", "yaml", "cli.commands.get", "ssl"}) & modules
    assert not unexpected


def test_get_imports_its_own_command_only(tmp_path: Path) -> None:
    # nothing listens on port 1: the command fails after the start-up this test is about
    code, modules, _ = started(["get", "pods", "-s", "http://127.0.0.1:1"], tmp_path)
    assert code == 1
    assert {"cli.commands.get", "httpx"} <= modules
    assert not (NOT_FOR_ANY_VERB | {"yaml", "apimachinery.printers", "cli.jsonpath"}) & modules
    assert not {m for m in modules if m.startswith("cli.commands.") and m != "cli.commands.get"}


def test_top_level_help_lists_every_command_and_imports_none(tmp_path: Path) -> None:
    code, modules, stdout = started(["--help"], tmp_path)
    assert code == 0
    listed = {line.strip("│ ").split(" ")[0] for line in stdout.splitlines() if line.startswith("│ ")}
    assert set(COMMANDS) <= listed
    assert not {m for m in modules if m.startswith("cli.commands.")}
    assert not (NOT_FOR_ANY_VERB - {"rich.table"}) & modules  # typer draws help with rich


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_table_line_is_the_commands_own_first_help_paragraph(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    own = (command.short_help or command.help or "").split("\n\n")[0]
    assert COMMANDS[name].help == own


def test_a_mistyped_command_suggests_one_not_yet_imported() -> None:
    result = runner.invoke(app, ["descrbe", "pods"])
    assert result.exit_code == 2
    assert "'describe'" in result.output


# --------------------------------------------------------------------------------------------------
# minik version
# --------------------------------------------------------------------------------------------------

SERVER_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-minik.0.1.0", "platform": "linux/amd64"}


@pytest.fixture(autouse=True)
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))


def version(args: list[str], handler: Any = None) -> Any:
    """``minik version ARGS`` in-process; ``handler`` answers the API's requests."""
    transport = httpx.MockTransport(handler or (lambda request: httpx.Response(200, json=SERVER_VERSION)))
    return runner.invoke(
        app, ["version", *args], obj=GlobalOptions(server="http://api.test", transport=transport)
    )


def test_version_prints_client_and_server_as_kubectl_does() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json=SERVER_VERSION)

    result = version([], handler)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Client Version: v{__version__}\nServer Version: v1.32.0-minik.0.1.0\n"
    assert paths == ["/version"]


def test_version_client_asks_no_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected request {request.url}")

    result = version(["--client"], handler)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Client Version: v{__version__}\n"


def test_version_json_uses_kubectls_field_names() -> None:
    result = version(["-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["serverVersion"] == SERVER_VERSION
    client = data["clientVersion"]
    assert client["gitVersion"] == f"v{__version__}"
    assert (client["major"], client["minor"]) == tuple(__version__.split(".")[:2])
    assert client["platform"].startswith(sys.platform + "/")
    assert client["pythonVersion"].startswith(f"python{sys.version_info.major}.{sys.version_info.minor}")


def test_version_yaml_client_only() -> None:
    result = version(["--client", "-o", "yaml"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert set(data) == {"clientVersion"}
    assert data["clientVersion"]["gitVersion"] == f"v{__version__}"


def test_version_unreachable_server_prints_client_then_error_exit_1() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = version([], handler)
    assert result.exit_code == 1
    assert result.stdout == f"Client Version: v{__version__}\n"
    assert "cannot reach the API server at http://api.test" in result.stderr
    assert "Traceback" not in result.output


def test_version_json_unreachable_server_keeps_the_client_part() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = version(["-o", "json"], handler)
    assert result.exit_code == 1
    assert set(json.loads(result.stdout)) == {"clientVersion"}


def test_version_rejects_other_output_formats() -> None:
    result = version(["--client", "-o", "wide"])
    assert result.exit_code == 1
    assert "error: --output must be 'yaml' or 'json'" in result.stderr
