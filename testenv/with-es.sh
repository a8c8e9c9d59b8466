#!/usr/bin/env bash
# Runs a command with a real Elasticsearch (DB=opensearch: OpenSearch 2.19.6; DB=opensearch3:
# OpenSearch 3.8.0): starts it (es-start.sh), loads Optimize-shaped data (load-data.sh), exports
# its address for the integration tests, runs the command, and stops and removes the node
# whatever the command's outcome.
#
#   testenv/with-es.sh go test ./...
#
# Exported to the command:
#   OPTIMIZE_BACKUP_TEST_ES_URL      http://127.0.0.1:$ES_HTTP_PORT (node 1)
#   OPTIMIZE_BACKUP_TEST_ES_RUN_DIR  its run directory (data, logs, snapshot repositories)
#   OPTIMIZE_BACKUP_TEST_DB          the database: elasticsearch (default) or opensearch (DB
#                                    opensearch or opensearch3: the sidecar reads both alike)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ES_HTTP_PORT=${ES_HTTP_PORT:-9270}
export ES_RUN_DIR=${ES_RUN_DIR:-$here/run/$ES_HTTP_PORT}

"$here/es-stop.sh" # a node left over from an interrupted run
trap '"$here/es-stop.sh"' EXIT
url=$("$here/es-start.sh")
"$here/load-data.sh" "$url" >&2

export OPTIMIZE_BACKUP_TEST_ES_URL=$url
export OPTIMIZE_BACKUP_TEST_ES_RUN_DIR=$ES_RUN_DIR
case "${DB:-elasticsearch}" in
  opensearch3) export OPTIMIZE_BACKUP_TEST_DB=opensearch ;; # the same product to the sidecar
  *) export OPTIMIZE_BACKUP_TEST_DB=${DB:-elasticsearch} ;;
esac
"$@"
