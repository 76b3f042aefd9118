#!/bin/bash
# A lab node: its own Docker engine, then minik-kubelet and minik-proxy (and with host-gw the route
# keeper), each restarted if it dies.
#
# The pod network: the kubelet runs the CNI plugins (bridge + host-local) over the node's
# spec.podCIDR, which the controller manager's node IPAM gives it.  Other nodes' pods are reached
# through the kubelet's VXLAN backend (POD_NETWORK_BACKEND=vxlan, the default: device minik.1, the
# nodes may sit on different networks behind a router), or with POD_NETWORK_BACKEND=host-gw through
# `python -m cli.labroutes`, which keeps a route to every other node's podCIDR via its InternalIP
# (the nodes must share one network).
#
# Environment (set by deploy/docker-compose.yml):
#   NODE_NAME     the Node's name (node-1, …)
#   CLUSTER_CIDR  all pod subnets (default 10.244.0.0/16): node IPAM's range; forwarded in by
#                 Docker's DOCKER-USER chain, and the only routes the route keeper manages
#   CLUSTER_DNS   the cluster DNS address for pods with dnsPolicy ClusterFirst (the kube-dns ClusterIP)
#   POD_NETWORK_BACKEND  vxlan (default) or host-gw
#   LAB_ROUTES    "CIDR via GATEWAY" (several separated by ";"): the other lab segment via the router
#   KUBELET_ARGS, PROXY_ARGS   extra flags
#
# Files (read-only mounts of `minik lab up`'s credentials, see cli/lab.py):
#   /etc/minik/kubelet.conf        the kubelet's kubeconfig: the API server's URL and CA, and the
#                                  node's client certificate (user system:node:NODE, group system:nodes)
#   /etc/minik/proxy.conf          the proxy's kubeconfig (user system:kube-proxy)
#   /etc/minik/pki/kubelet.crt|key the kubelet's serving certificate (its HTTPS API on the node address)
#   /etc/minik/pki/ca.crt          the lab's CA: the kubelet accepts client certificates it signed
set -uo pipefail

NODE_NAME="${NODE_NAME:-$(hostname)}"
CLUSTER_CIDR="${CLUSTER_CIDR:-10.244.0.0/16}"
LOG_DIR=/var/log/minik
mkdir -p "$LOG_DIR"

say() { echo "$(date -u +%FT%TZ) node-entrypoint $NODE_NAME: $*"; }

NODE_IP="$(ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 | head -n1)"
POD_NETWORK_BACKEND="${POD_NETWORK_BACKEND:-vxlan}"
say "node IP $NODE_IP, cluster CIDR $CLUSTER_CIDR, pod network backend $POD_NETWORK_BACKEND"

# the other segment (the control plane's, or the other nodes') is behind the router
if [ -n "${LAB_ROUTES:-}" ]; then
    echo "$LAB_ROUTES" | tr ';' '\n' | while read -r route; do
        [ -n "$route" ] || continue
        # shellcheck disable=SC2086  # a route is a word list
        ip route replace $route && say "route $route" || say "cannot add the route $route"
    done
fi

# cgroup v2 (GitHub's ubuntu runners): move this container's processes out of the root cgroup so the
# nested dockerd may enable controllers for its children (the same step as docker:dind's script).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
        >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi

# Without --privileged (hosts whose engine cannot grant every capability) /sys, /proc/sys and the
# cgroup v1 hierarchies are mounted read-only; the nested dockerd writes sysctls and creates its
# containers' cgroups under them.  (With --privileged they are read-write already.)
if awk '$2 == "/sys" && $4 ~ /(^|,)ro(,|$)/ {found=1} END {exit !found}' /proc/mounts; then
    mount -o remount,rw /sys || say "cannot remount /sys read-write"
fi
if awk '$2 == "/proc/sys" && $4 ~ /(^|,)ro(,|$)/ {found=1} END {exit !found}' /proc/mounts; then
    mount -o remount,bind,rw /proc/sys || say "cannot remount /proc/sys read-write"
fi
awk '$3 == "cgroup" && $4 ~ /(^|,)ro(,|$)/ {print $2}' /proc/mounts | while read -r m; do
    mount -o remount,bind,rw "$m" || say "cannot remount $m read-write"
done

children=()
stopping=0
shutdown() {
    stopping=1
    say "stopping"
    for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    # the kubelet leaves pod containers running on SIGTERM (as Kubernetes' does); the engine stops
    # them when it shuts down
    for pid in "${children[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -n "${DOCKERD_PID:-}" ]; then
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    exit 0
}
trap shutdown TERM INT

# a previous run killed with -9 leaves its pid file behind
rm -f /var/run/docker.pid /run/docker/containerd/containerd.pid
dockerd --host unix:///var/run/docker.sock >"$LOG_DIR/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
        say "dockerd exited:"
        tail -n 30 "$LOG_DIR/dockerd.log"
        exit 1
    fi
    sleep 0.5
done
docker info >/dev/null 2>&1 || { say "dockerd did not start"; tail -n 30 "$LOG_DIR/dockerd.log"; exit 1; }
say "dockerd is up ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"

# Docker drops forwarded traffic to its bridges unless it is a reply or a published port; pods of
# other nodes must reach this node's pods directly
iptables -C DOCKER-USER -d "$CLUSTER_CIDR" -j ACCEPT 2>/dev/null \
    || iptables -I DOCKER-USER -d "$CLUSTER_CIDR" -j ACCEPT

# run NAME MODULE ARGS...: keep `python -m MODULE ARGS` running, restarting it with a growing pause
supervise() {
    local name="$1" module="$2"
    shift 2
    if ! /opt/minik/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)"; then
        say "$module is not part of this installation; $name not started"
        return
    fi
    (
        trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM
        backoff=1
        while :; do
            started=$(date +%s)
            /opt/minik/bin/python -m "$module" "$@" >>"$LOG_DIR/$name.log" 2>&1 &
            child=$!
            wait "$child"
            code=$?
            [ $(($(date +%s) - started)) -gt 60 ] && backoff=1
            echo "$(date -u +%FT%TZ) $name exited with $code; restarting in ${backoff}s" >>"$LOG_DIR/$name.log"
            sleep "$backoff"
            backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
        done
    ) &
    children+=($!)
    say "started $name"
}

# shellcheck disable=SC2086  # *_ARGS are word lists on purpose
PKI=/etc/minik/pki
# host-gw is the route keeper's (below); vxlan the kubelet's own
KUBELET_BACKEND=vxlan
[ "$POD_NETWORK_BACKEND" = vxlan ] || KUBELET_BACKEND=none
supervise kubelet kubelet.main --kubeconfig /etc/minik/kubelet.conf --node-name "$NODE_NAME" \
    --node-ip "$NODE_IP" --tls-cert-file "$PKI/kubelet.crt" --tls-private-key-file "$PKI/kubelet.key" \
    --client-ca-file "$PKI/ca.crt" \
    --pod-network-backend "$KUBELET_BACKEND" --cluster-cidr "$CLUSTER_CIDR" \
    ${CLUSTER_DNS:+--cluster-dns "$CLUSTER_DNS"} ${KUBELET_ARGS:-}
# shellcheck disable=SC2086
supervise proxy proxy.main --kubeconfig /etc/minik/proxy.conf --node-name "$NODE_NAME" \
    --cluster-cidr "$CLUSTER_CIDR" ${PROXY_ARGS:-}
# host-gw: a route to every other node's pod CIDR via its address on the lab network
if [ "$POD_NETWORK_BACKEND" = host-gw ]; then
    supervise routes cli.labroutes --kubeconfig /etc/minik/proxy.conf --node-name "$NODE_NAME" \
        --cluster-cidr "$CLUSTER_CIDR" --dev eth0
fi
# the ingress controller (HAProxy) on the node's ports 80 and 443
if [ -f /etc/minik/ingress.conf ]; then
    # shellcheck disable=SC2086
    supervise ingress ingress.main --kubeconfig /etc/minik/ingress.conf --node-name "$NODE_NAME" \
        --state-dir /var/lib/minik-ingress ${INGRESS_ARGS:-}
fi

# the logs of the node's components are this container's logs
touch "$LOG_DIR/kubelet.log" "$LOG_DIR/proxy.log" "$LOG_DIR/ingress.log" "$LOG_DIR/routes.log"
tail -q -n +1 -F "$LOG_DIR/kubelet.log" "$LOG_DIR/proxy.log" "$LOG_DIR/ingress.log" "$LOG_DIR/routes.log" &
children+=($!)

while [ "$stopping" = 0 ]; do
    wait -n 2>/dev/null || sleep 1
done
