#!/usr/bin/env bash
# Starts a real Elasticsearch 8.14.1, OpenSearch 2.19.6 (DB=opensearch) or OpenSearch 3.8.0
# (DB=opensearch3), 1 or 3 nodes, on 127.0.0.1 in the background, waits until the cluster is
# healthy, registers an fs snapshot repository and prints the URL of node 1.
#
#   testenv/es-start.sh                      # 1 node, HTTP on 9250
#   ES_NODES=3 ES_HTTP_PORT=9260 testenv/es-start.sh
#
# Environment (all optional):
#   DB             elasticsearch (default), opensearch (2.19.6) or opensearch3 (3.8.0)
#   ES_NODES       1 or 3 (default 1)
#   ES_HTTP_PORT   HTTP port of node 1; node N listens on ES_HTTP_PORT+N-1 (default 9250)
#   ES_RUN_DIR     where data, logs, config and the snapshot repository live
#                  (default testenv/run/<http port>); es-stop.sh removes it
#   ES_REPOSITORY  name of the fs snapshot repository to register (default test-repo)
#   ES_HEAP        JVM heap per node (default 1g for one node, 512m each for three)
#   ES_JAVA_HOME   the Java to run it on (default: the machine's java; for OpenSearch 3, which
#                  needs Java 21 or newer, the newest under /usr/lib/jvm when that one is older)
#   ES_WAIT_FOR    the cluster status to wait for: yellow (default), or red for a node started
#                  again after a crash, whose indices may never recover (es-crash.sh)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
nodes=${ES_NODES:-1}
http_port=${ES_HTTP_PORT:-9250}
transport_port=$((http_port + 100))
run_dir=${ES_RUN_DIR:-$here/run/$http_port}
repository=${ES_REPOSITORY:-test-repo}
if [ "$nodes" = 1 ]; then heap=${ES_HEAP:-1g}; else heap=${ES_HEAP:-512m}; fi
url="http://127.0.0.1:$http_port"

case "$nodes" in 1 | 3) ;; *) echo "es-start: ES_NODES must be 1 or 3, not '$nodes'" >&2; exit 2 ;; esac

if curl -fsS "$url" >/dev/null 2>&1; then
  echo "es-start: something already answers on $url; stop it first (testenv/es-stop.sh)" >&2
  exit 1
fi

# Download (once, cached in ~/.m2) and unpack the distribution. OpenSearch reads the same
# variables under its own names. The integ-test distributions bundle no JDK; java_min is the
# oldest Java each runs on.
case "${DB:-elasticsearch}" in
  elasticsearch) es_home=$here/target/elasticsearch-8.14.1 bin=elasticsearch env_prefix=ES java_min=17 ;;
  opensearch) es_home=$here/target/opensearch-2.19.6 bin=opensearch env_prefix=OPENSEARCH java_min=17 ;;
  opensearch3) es_home=$here/target/opensearch-3.8.0 bin=opensearch env_prefix=OPENSEARCH java_min=21 ;;
  *) echo "es-start: DB must be elasticsearch, opensearch or opensearch3, not '$DB'" >&2; exit 2 ;;
esac
if [ ! -x "$es_home/bin/$bin" ]; then
  mvn -f "$here/pom.xml" -B -q process-resources >&2
fi

# java_major prints the major version of the Java installed at $1 (17, 21, 25), or nothing.
java_major() {
  local version
  if [ -f "$1/release" ]; then
    version=$(sed -n 's/^JAVA_VERSION="\([^"]*\)"/\1/p' "$1/release")
  else
    version=$("$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -1)
  fi
  echo "${version%%.*}"
}

# new_enough says whether the Java at $1 runs this distribution (java_min or newer).
new_enough() {
  local major
  major=$(java_major "$1")
  [ -n "$major" ] && [ "$major" -ge "$java_min" ]
}

# The Java to run on: ES_JAVA_HOME when set, else the java on PATH when it is new enough, else the
# newest under /usr/lib/jvm (Debian 12's java is 17; OpenSearch 3 needs 21, and the machine has a
# Temurin JDK beside it there).
dist=$(basename "$es_home")
if [ -n "${ES_JAVA_HOME:-}" ]; then
  java_home=$ES_JAVA_HOME
  new_enough "$java_home" || {
    echo "es-start: ES_JAVA_HOME=$java_home is not a Java $java_min or newer, which $dist needs; point it at one" >&2
    exit 1
  }
else
  java_home=""
  if command -v java >/dev/null; then
    java_home=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
  fi
  if [ -z "$java_home" ] || ! new_enough "$java_home"; then
    java_home="" best=0
    for candidate in /usr/lib/jvm/*/; do
      candidate=${candidate%/}
      [ -x "$candidate/bin/java" ] && new_enough "$candidate" || continue
      major=$(java_major "$candidate")
      [ "$major" -le "$best" ] || java_home=$candidate best=$major
    done
  fi
  [ -n "$java_home" ] || {
    echo "es-start: $dist needs Java $java_min or newer, and neither the java on PATH nor any under /usr/lib/jvm is; install a JDK $java_min or newer, or set ES_JAVA_HOME to one" >&2
    exit 1
  }
fi
export "${env_prefix}_JAVA_HOME=$java_home"

seed_hosts=""
master_nodes=""
for n in $(seq 1 "$nodes"); do
  seed_hosts="$seed_hosts\"127.0.0.1:$((transport_port + n - 1))\","
  master_nodes="$master_nodes\"node-$n\","
done

mkdir -p "$run_dir/repo"

# Elasticsearch refuses to run as root. Where this script runs as root (CI, containers), the nodes
# run as an unprivileged system user that owns the run directory.
as_user=()
if [ "$(id -u)" = 0 ]; then
  es_user=${ES_USER:-optimize-es}
  id "$es_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$es_user"
  as_user=(runuser -u "$es_user" --)
fi
for n in $(seq 1 "$nodes"); do
  node_dir=$run_dir/node-$n
  mkdir -p "$node_dir/data" "$node_dir/logs"
  rm -rf "$node_dir/config"
  cp -r "$es_home/config" "$node_dir/config"
  # The stock options write GC logs and heap dumps relative to ES_HOME, which the node user
  # may not write to; a test node needs neither.
  sed -i -e '/-Xlog:gc/d' -e '/HeapDumpPath/d' -e '/ErrorFile/d' "$node_dir/config/jvm.options"
  {
    echo "cluster.name: optimize-backup-test-$http_port"
    echo "node.name: node-$n"
    echo "network.host: 127.0.0.1"
    echo "http.port: $((http_port + n - 1))"
    echo "transport.port: $((transport_port + n - 1))"
    echo "path.data: $node_dir/data"
    echo "path.logs: $node_dir/logs"
    echo "path.repo: [\"$run_dir/repo\"]"
    if [ "$nodes" = 1 ]; then
      echo "discovery.type: single-node"
    elif [ "$bin" = opensearch ]; then
      echo "discovery.seed_hosts: [${seed_hosts%,}]"
      echo "cluster.initial_cluster_manager_nodes: [${master_nodes%,}]"
    else
      echo "discovery.seed_hosts: [${seed_hosts%,}]"
      echo "cluster.initial_master_nodes: [${master_nodes%,}]"
    fi
    # A test node: no TLS or users (the integ-test OpenSearch has no security plugin), and no
    # refusal to allocate shards on a nearly full disk.
    [ "$bin" = opensearch ] || echo "xpack.security.enabled: false"
    echo "cluster.routing.allocation.disk.threshold_enabled: false"
  } >"$node_dir/config/$bin.yml"
  [ ${#as_user[@]} -eq 0 ] || chown -R "$es_user" "$run_dir"
  env "${env_prefix}_PATH_CONF=$node_dir/config" "${env_prefix}_JAVA_OPTS=-Xms$heap -Xmx$heap" \
    "${as_user[@]}" "$es_home/bin/$bin" -d -p "$node_dir/pid" >"$node_dir/logs/start.out" 2>&1 || {
    echo "es-start: node-$n did not start; see $node_dir/logs/start.out and $node_dir/logs/" >&2
    tail -20 "$node_dir/logs/start.out" >&2
    exit 1
  }
done

# Wait for every node to have joined one cluster and for it to be at least yellow.
for _ in $(seq 1 120); do
  if health=$(curl -fsS "$url/_cluster/health?wait_for_status=${ES_WAIT_FOR:-yellow}&wait_for_nodes=$nodes&timeout=1s" 2>/dev/null) &&
    grep -q "\"number_of_nodes\":$nodes," <<<"$health" && ! grep -q '"timed_out":true' <<<"$health"; then
    break
  fi
  sleep 1
done
if ! grep -q "\"number_of_nodes\":$nodes," <<<"${health:-}"; then
  echo "es-start: cluster at $url did not become healthy with $nodes node(s) in 120 s: ${health:-no answer}" >&2
  echo "es-start: logs are in $run_dir/node-*/logs" >&2
  exit 1
fi

curl -fsS -X PUT "$url/_snapshot/$repository" -H 'Content-Type: application/json' \
  -d "{\"type\":\"fs\",\"settings\":{\"location\":\"$run_dir/repo/$repository\"}}" >/dev/null
echo "$url"
