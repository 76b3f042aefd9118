#!/bin/bash
# A lab machine: its own Docker engine (for its kubelet's pods), then, by LAB_ROLE, what a real
# machine runs to become part of the cluster:
#   init           `minik up` (the first control plane: etcd, API server, controller manager,
#                  scheduler, DNS, metrics-server, ingress, and its own kubelet and proxy)
#   control-plane  `minik join --control-plane` (another API server, etcd member, controller
#                  manager, scheduler, kubelet and proxy)
#   worker         `minik join` (kubelet and proxy), with a bootstrap token
# The join commands come from `minik lab up`, which runs `minik token create --print-join-command`
# on cp-1 once it is up and writes the result to /etc/minik/join/command (a read-only mount; the
# workers' and the control planes' are different files); the machine waits for it.  After a
# restart a machine that joined before starts its supervisor again with the credentials it has.
#
# The pod network is the kubelet's (--pod-network-backend): VXLAN (device minik.1, the nodes may
# sit on different networks behind a router) or host-gw (one network).
#
# Environment (set by the compose file, see cli/lab.py):
#   NODE_NAME             the Node's name (cp-1, node-1, …)
#   LAB_ROLE              init, control-plane or worker
#   LAB_API_ENDPOINT      HOST:PORT of HAProxy, in front of the API servers: where the machines join
#   LAB_UP_ARGS           more flags for minik up (--control-plane-endpoint, --advertise-address)
#   LAB_ADVERTISE_ADDRESS a control plane's address (minik join --control-plane --advertise-address)
#   CLUSTER_CIDR          all pod subnets (default 10.244.0.0/16), let through Docker's DOCKER-USER chain
#   POD_NETWORK_BACKEND   vxlan (default) or host-gw
#   LAB_ROUTES            "CIDR via GATEWAY" (several separated by ";"): the other lab segment via the router
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
    # the supervisor stops the node's components (the kubelet leaves the pod containers running)
    sup="$(cat /root/.minik/supervisor.pid 2>/dev/null)"
    if [ -n "$sup" ] && kill -TERM "$sup" 2>/dev/null; then
        for _ in $(seq 1 30); do kill -0 "$sup" 2>/dev/null || break; sleep 0.1; done
    fi
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

STATE=/root/.minik
JOIN_FILE=/etc/minik/join/command
mkdir -p "$STATE/logs"
touch "$STATE/logs/supervisor.log"

# the arguments of a `minik join` command that `lab up` wrote: --token, the CA pin and (for a
# control plane) the certificate key; the server is the load balancer, as this machine reaches it
join_value() { # join_value FLAG: the word after FLAG in the join command
    local flag="$1" prev="" word
    # shellcheck disable=SC2013  # words, not lines
    for word in $(cat "$JOIN_FILE"); do
        [ "$prev" = "$flag" ] && { echo "$word"; return; }
        prev="$word"
    done
}

# restart a machine that joined before (the container was stopped and started): `minik up` on
# the state directory `minik join` made starts its supervisor again with the join's settings and
# credentials; the token is not needed any more
restart_joined() {
    (cd / && minik up --timeout 300) && say "started again from $STATE" \
        || say "minik up on the joined state did not finish (it keeps trying: $STATE/logs)"
}

minik_join() {
    local extra=()
    if [ "$LAB_ROLE" = control-plane ]; then
        extra=(--control-plane --certificate-key "$(join_value --certificate-key)"
            --advertise-address "${LAB_ADVERTISE_ADDRESS:-$NODE_IP}")
    fi
    minik join "https://$LAB_API_ENDPOINT" --token "$(join_value --token)" \
        --discovery-token-ca-cert-hash "$(join_value --discovery-token-ca-cert-hash)" \
        --node-name "$NODE_NAME" --pod-network-backend "$POD_NETWORK_BACKEND" \
        --cluster-cidr "$CLUSTER_CIDR" --timeout 180 "${extra[@]}"
}

case "${LAB_ROLE:-worker}" in
init)
    # the first control plane: `minik up` (again after a restart: it reuses its credentials)
    # shellcheck disable=SC2086  # LAB_UP_ARGS is a word list
    (cd / && minik up --node-name "$NODE_NAME" --pod-network-backend "$POD_NETWORK_BACKEND" \
        --cluster-cidr "$CLUSTER_CIDR" --timeout 300 ${LAB_UP_ARGS:-}) \
        && say "minik up done" || say "minik up did not finish (it keeps trying: $STATE/logs)"
    ;;
worker | control-plane)
    if [ -f "$STATE/config.json" ]; then
        restart_joined
    else
        # wait for the join command `minik lab up` writes once the first control plane is up
        until [ -s "$JOIN_FILE" ]; do sleep 1; done
        until (cd / && minik_join); do
            if [ -f "$STATE/config.json" ]; then
                say "minik join started the node but it is not Ready yet; its supervisor keeps trying"
                break
            fi
            say "minik join failed; trying again in 5s"
            sleep 5
        done
        say "joined as $LAB_ROLE"
    fi
    ;;
*)
    say "LAB_ROLE=$LAB_ROLE: one of init, control-plane, worker"
    exit 2
    ;;
esac

# the supervisor's log is this container's log (the components' logs are in $STATE/logs)
tail -q -n +1 -F "$STATE/logs/supervisor.log" &
children+=($!)

while [ "$stopping" = 0 ]; do
    wait -n 2>/dev/null || sleep 1
done
