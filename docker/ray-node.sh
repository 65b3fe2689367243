#!/usr/bin/env bash
# A Ray node in the foreground: `ray-node head` or `ray-node worker`, configured by environment variables.
#   head:   HPSCAPE_HEAD_CPUS (default 0: the head schedules, it does not train)
#   worker: HPSCAPE_RAY_HEAD (HOST:PORT of the head), HPSCAPE_WORKER_CPUS (default: every CPU of the container)
# With RAY_AUTH_MODE=token every node and driver needs the same RAY_AUTH_TOKEN.
set -euo pipefail
role="${1:-worker}"
shift || true
if [ "${RAY_AUTH_MODE:-}" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
  echo "RAY_AUTH_MODE=token needs RAY_AUTH_TOKEN (the cluster's shared secret, e.g. \`openssl rand -hex 32\`)" >&2
  exit 2
fi
case "$role" in
  head)
    # The dashboard listens on loopback inside the container: reach it with `docker compose exec ray-head ...`
    # or an SSH tunnel, never on a published port.
    exec ray start --head --block --disable-usage-stats \
      --port=6379 \
      --dashboard-host=127.0.0.1 \
      --num-cpus="${HPSCAPE_HEAD_CPUS:-0}" --num-gpus=0 "$@"
    ;;
  worker)
    exec ray start --block --disable-usage-stats \
      --address="${HPSCAPE_RAY_HEAD:?set HPSCAPE_RAY_HEAD to the Ray head as HOST:PORT, e.g. ray-head:6379}" \
      ${HPSCAPE_WORKER_CPUS:+--num-cpus="$HPSCAPE_WORKER_CPUS"} "$@"
    ;;
  *)
    exec "$role" "$@"  # anything else runs as a command, e.g. `docker compose run ray-worker bash`
    ;;
esac
