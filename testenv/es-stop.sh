#!/usr/bin/env bash
# Stops the Elasticsearch that es-start.sh started on ES_HTTP_PORT (default 9250) and removes its
# data, logs and snapshot repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
http_port=${ES_HTTP_PORT:-9250}
run_dir=${ES_RUN_DIR:-$here/run/$http_port}
[ -d "$run_dir" ] || exit 0
for pidfile in "$run_dir"/node-*/pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
done
# The repository may have been made read-only by a test; make it removable again.
chmod -R u+w "$run_dir" 2>/dev/null || true
rm -rf "$run_dir"
