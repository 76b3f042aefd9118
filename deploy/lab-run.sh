#!/bin/sh
# minik-lab-run MODULE [ARGS...]: run `python -m MODULE ARGS` if this image has the module, so the
# compose file can name every component while some are still being built; otherwise say so and idle
# (the service stays up, doing nothing, and `minik lab status` shows it as not installed).
#
# LAB_ROUTES ("CIDR via GATEWAY", several separated by ";"): routes to add first, such as the other
# lab segment via the router (the container needs NET_ADMIN).
module="$1"
shift
if [ -n "${LAB_ROUTES:-}" ]; then
    echo "$LAB_ROUTES" | tr ';' '\n' | while read -r route; do
        [ -n "$route" ] || continue
        # shellcheck disable=SC2086  # a route is a word list
        ip route replace $route || echo "minik-lab-run: cannot add the route $route" >&2
    done
fi
if /opt/minik/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" 2>/dev/null; then
    exec /opt/minik/bin/python -m "$module" "$@"
fi
echo "minik-lab-run: $module is not part of this installation; idling" >&2
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
