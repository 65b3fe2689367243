#!/usr/bin/env bash
# The controller container: join the Ray cluster as a node with no CPUs and no GPUs (a sweep driver must run on a Ray
# node; its trials are scheduled on the workers), then serve the API. Configured by HPSCAPE_* variables.
set -euo pipefail
address="${HPSCAPE_RAY_ADDRESS:-}"
case "$address" in
  "" | auto | ray://*) ;;  # local Ray, an already joined node, or Ray Client: nothing to start here
  *)
    for attempt in $(seq 1 30); do
      ray start --address="$address" --num-cpus=0 --num-gpus=0 --disable-usage-stats && break
      echo "waiting for the Ray head at $address (attempt $attempt/30) ..." >&2
      sleep 2
    done
    ray status --address="$address" >/dev/null || { echo "cannot join the Ray cluster at $address" >&2; exit 1; }
    ;;
esac
exec hpscape serve --host 0.0.0.0 --port 8000 "$@"
