#!/bin/sh
# minik-lab-run MODULE [ARGS...]: run `python -m MODULE ARGS` if this image has the module, so the
# compose file can name every component while some are still being built; otherwise say so and idle
# (the service stays up, doing nothing, and `minik lab status` shows it as not installed).
module="$1"
shift
if /opt/minik/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" 2>/dev/null; then
    exec /opt/minik/bin/python -m "$module" "$@"
fi
echo "minik-lab-run: $module is not part of this installation; idling" >&2
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
