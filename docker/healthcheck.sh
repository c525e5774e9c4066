#!/usr/bin/env bash
# Docker HEALTHCHECK: asks the host's unauthenticated health endpoint, on the address the
# entrypoint made it listen on (same variables: COMFYHOST_LISTEN, or LISTEN_HOST and PORT;
# COMFYHOST_PREFIX). Healthy means the host serves; ComfyUI's own state is on the dashboard.
set -euo pipefail
listen=${COMFYHOST_LISTEN:-${LISTEN_HOST:-0.0.0.0}:${PORT:-8188}}
port=${listen##*:}
host=${listen%:*}
case "$host" in
  0.0.0.0 | "") host=127.0.0.1 ;;
  "[::]") host="[::1]" ;;
esac
prefix=${COMFYHOST_PREFIX:-}
prefix=${prefix%/}
if [ -n "$prefix" ] && [ "${prefix#/}" = "$prefix" ]; then prefix="/$prefix"; fi
exec curl --fail --silent --show-error --max-time "${HEALTHCHECK_TIMEOUT:-4}" \
  --output /dev/null "http://$host:$port$prefix/comfyhost/api/health"
