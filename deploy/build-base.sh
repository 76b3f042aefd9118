#!/usr/bin/env bash
# Build the lab's base image without a registry: a minimal Debian bookworm made with debootstrap on
# this host, imported into Docker.  Where a registry is reachable, skip this and build the lab images
# with `--build-arg BASE=python:3.11-slim` instead (see docs/lab.md).
#
#   deploy/build-base.sh [IMAGE]        default IMAGE: minik/base:bookworm
#
# The base carries what both lab images need, so that no `apt-get` runs inside `docker build`:
# Python 3.11 with venv, and for the node image Docker's engine (docker.io), iptables, iproute2, the
# standard CNI plugins (containernetworking-plugins: bridge, host-local, loopback, portmap, firewall)
# and conntrack (the proxy clears UDP conntrack entries).
set -euo pipefail

IMAGE="${1:-minik/base:bookworm}"
SUITE="${MINIK_BASE_SUITE:-bookworm}"
PACKAGES="python3,python3-venv,ca-certificates,docker.io,iptables,iproute2,procps,busybox-static,haproxy,containernetworking-plugins,conntrack"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE exists"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install -y debootstrap)" >&2; exit 1; }

ROOT="$(mktemp -d /tmp/minik-base.XXXXXX)"
cleanup() {
    # debootstrap mounts /proc (and /sys) inside the target while it runs; unmount before removing
    { grep -o " $ROOT/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
    rm -rf "$ROOT" "$ROOT.log"
}
trap cleanup EXIT
echo "debootstrap $SUITE into $ROOT (about a minute)…"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" >"$ROOT.log" 2>&1 || {
    tail -n 30 "$ROOT.log" >&2
    exit 1
}
# smaller image: no apt lists or package cache
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
echo "importing as $IMAGE…"
tar -C "$ROOT" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null
echo "built $IMAGE"
