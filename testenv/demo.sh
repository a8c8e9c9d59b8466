#!/usr/bin/env bash
# make demo: a real Elasticsearch (DB=opensearch: OpenSearch 2.19.6; DB=opensearch3: OpenSearch
# 3.8.0) with Optimize-shaped demo data and the sidecar on :8092 wired to it, through the
# variables Optimize reads for that database.
# Prints curl commands to try; Ctrl-C stops the sidecar and the node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ES_HTTP_PORT=${ES_HTTP_PORT:-9250}
port=${MANAGEMENT_SERVER_PORT:-8092}
token=${OPTIMIZE_BACKUP_ADMIN_TOKEN:-demo-admin-token}
product="Elasticsearch 8.14.1" database=elasticsearch
case "${DB:-elasticsearch}" in
  opensearch) product="OpenSearch 2.19.6" database=opensearch ;;
  opensearch3) product="OpenSearch 3.8.0" database=opensearch ;;
esac

"$here/es-stop.sh"
sidecar_pid=""
cleanup() {
  [ -z "$sidecar_pid" ] || kill "$sidecar_pid" 2>/dev/null || true
  [ -z "$sidecar_pid" ] || wait "$sidecar_pid" 2>/dev/null || true
  "$here/es-stop.sh"
  echo "demo: stopped the sidecar and $product"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "demo: starting $product (the first run downloads it from Maven Central)..."
url=$("$here/es-start.sh")
"$here/load-data.sh" "$url"
connection=("OPTIMIZE_ELASTICSEARCH_URLS=$url")
if [ "$database" = opensearch ]; then
  # The variables Optimize reads on OpenSearch, as the Camunda Helm chart sets them.
  connection=(CAMUNDA_OPTIMIZE_DATABASE=opensearch CAMUNDA_OPTIMIZE_OPENSEARCH_HOST=127.0.0.1 "CAMUNDA_OPTIMIZE_OPENSEARCH_HTTP_PORT=$ES_HTTP_PORT")
fi

env "${connection[@]}" CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME=test-repo \
  MANAGEMENT_SERVER_PORT=$port OPTIMIZE_BACKUP_ADMIN_TOKEN=$token \
  "$here/../optimize-backup" &
sidecar_pid=$!
for _ in $(seq 1 50); do curl -fsS "localhost:$port/actuator/health/liveness" >/dev/null 2>&1 && break; sleep 0.1; done

cat <<MSG

optimize-backup serves on http://localhost:$port with $product at $url (repository test-repo).
Try:
  curl -s -XPOST localhost:$port/actuator/backups -H 'Content-Type: application/json' -d '{"backupId": 1}'
  curl -s localhost:$port/actuator/backups/1
  curl -s localhost:$port/actuator/backups
  curl -s -XPOST localhost:$port/actuator/backup -H 'Content-Type: application/json' -d '{"backupId": "nightly-1"}'
  curl -s -XDELETE -H 'Authorization: Bearer $token' localhost:$port/actuator/backups/1 -w '%{http_code}\n'
  curl -s localhost:$port/actuator/health
  curl -s localhost:$port/actuator/info
Ctrl-C stops everything.
MSG
wait "$sidecar_pid"
