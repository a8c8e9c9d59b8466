#!/usr/bin/env bash
# Loads Optimize-shaped indices and documents into an Elasticsearch through its real API, named
# as Optimize names them (docs/installation-indices.md): physical indices {prefix}-{name}_v{N}
# behind aliases {prefix}-{name}, the three import indices, the metadata index with document 1
# and its schemaVersion, process-instance indices per definition key (one a rollover index
# -000001), report, dashboard and collection indices. It also loads a second installation whose
# prefix starts with the first one's (optimize-east, with its own metadata index), a foreign
# index that merely starts with the prefix (optimize-logs-2026.11) and an unrelated index: none
# of them may ever be backed up, blocked, deleted or restored for the first prefix.
#
#   testenv/load-data.sh http://127.0.0.1:9250
#
# Environment (all optional):
#   PREFIX          index prefix (default optimize)
#   OTHER_PREFIX    the second installation's prefix (default PREFIX-east)
#   DOCS            documents in total for PREFIX (default 10000)
#   SCHEMA_VERSION  Optimize version written to {prefix}-metadata (default 3.9.0-SNAPSHOT)
set -euo pipefail

url=${1:?usage: load-data.sh ELASTICSEARCH_URL}
prefix=${PREFIX:-optimize}
other=${OTHER_PREFIX:-$prefix-east}
docs=${DOCS:-10000}
schema_version=${SCHEMA_VERSION:-3.9.0-SNAPSHOT}

es() { # method path [body-file]
  local out
  if [ $# -ge 3 ]; then
    out=$(curl -sS -X "$1" "$url$2" -H 'Content-Type: application/x-ndjson' --data-binary "@$3")
  else
    out=$(curl -sS -X "$1" "$url$2")
  fi
  if grep -q '"errors":true\|"error":' <<<"$out"; then
    echo "load-data: $1 $2 failed: ${out:0:500}" >&2
    exit 1
  fi
}

create_index() { # physical alias
  local body
  body=$(mktemp)
  printf '{"settings":{"number_of_shards":1,"number_of_replicas":0},"aliases":{"%s":{}}}' "$2" >"$body"
  es PUT "/$1" "$body"
  rm -f "$body"
}

# load physical count kind: bulk-index count documents of one kind into an index.
load() {
  local bulk
  bulk=$(mktemp)
  awk -v n="$2" -v kind="$3" -v ix="$1" 'BEGIN {
    for (i = 1; i <= n; i++) {
      printf "{\"index\":{\"_index\":\"%s\",\"_id\":\"%s-%d\"}}\n", ix, kind, i
      printf "{\"kind\":\"%s\",\"seq\":%d,\"name\":\"%s %d\",\"value\":%d,\"tags\":[\"t%d\",\"t%d\"]}\n", kind, i, kind, i, (i * 7919) % 10007, i % 13, i % 7
    }
  }' >"$bulk"
  es POST "/_bulk?refresh=wait_for" "$bulk"
  rm -f "$bulk"
}

# dataset prefix docs: the Optimize indices of one prefix.
dataset() {
  local p=$1 total=$2
  create_index "$p-import-index_v3" "$p-import-index"
  create_index "$p-timestamp-based-import-index_v4" "$p-timestamp-based-import-index"
  create_index "$p-position-based-import-index_v2" "$p-position-based-import-index"
  create_index "$p-metadata_v3" "$p-metadata"
  create_index "$p-single-process-report_v10" "$p-single-process-report"
  create_index "$p-dashboard_v8" "$p-dashboard"
  create_index "$p-collection_v5" "$p-collection"
  create_index "$p-process-definition_v6" "$p-process-definition"
  create_index "$p-external-process-variable_v2-000001" "$p-external-process-variable"
  local keys=(invoice order-fulfilment shipping)
  for key in "${keys[@]}"; do
    create_index "$p-process-instance-${key}_v8" "$p-process-instance-$key"
  done

  local meta
  meta=$(mktemp)
  printf '{"index":{"_index":"%s-metadata","_id":"1"}}\n{"schemaVersion":"%s","installationId":"demo"}\n' "$p" "$schema_version" >"$meta"
  es POST "/_bulk?refresh=wait_for" "$meta"
  rm -f "$meta"

  # About 3% import positions and definitions, 3% reports and dashboards, the rest instances
  # and variables.
  local small=$((total / 100 > 1 ? total / 100 : 1))
  load "$p-import-index_v3" "$small" import
  load "$p-timestamp-based-import-index_v4" "$small" timestamp-import
  load "$p-position-based-import-index_v2" "$small" position-import
  load "$p-single-process-report_v10" "$small" report
  load "$p-dashboard_v8" "$small" dashboard
  load "$p-collection_v5" "$small" collection
  load "$p-process-definition_v6" "$small" definition
  local rest=$((total - 7 * small - 1))
  local per=$((rest / 4))
  load "$p-external-process-variable_v2-000001" "$((rest - 3 * per))" variable
  for key in "${keys[@]}"; do
    load "$p-process-instance-${key}_v8" "$per" "instance-$key"
  done
}

dataset "$prefix" "$docs"
dataset "$other" 100
# Indices that belong to nobody's Optimize: one merely starts with the prefix.
create_index "unrelated-logs" "unrelated"
load "unrelated-logs" 50 log
create_index "$prefix-logs-2026.11" "$prefix-logs"
load "$prefix-logs-2026.11" 20 log
echo "load-data: loaded $docs documents under $prefix-*, 100 under $other-*, 50 in unrelated-logs, 20 in $prefix-logs-2026.11 into $url"
