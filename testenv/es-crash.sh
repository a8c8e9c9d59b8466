#!/usr/bin/env bash
# Crashes the Elasticsearch that es-start.sh started on ES_HTTP_PORT (SIGKILL to every node, as
# the kernel's OOM killer would) and starts it again on the same data, without waiting for its
# indices to recover: some may never. Prints the URL of node 1, as es-start.sh does.
#
#   ES_HTTP_PORT=9285 testenv/es-crash.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
http_port=${ES_HTTP_PORT:-9250}
run_dir=${ES_RUN_DIR:-$here/run/$http_port}
for pidfile in "$run_dir"/node-*/pid; do
  pid=$(cat "$pidfile")
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done
ES_WAIT_FOR=red exec "$here/es-start.sh"
