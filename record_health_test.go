package main

import (
	"bytes"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// healthQuery is the query the sidecar sends to read the shards of indices from the cluster
// state (see indicesHealth).
func healthQuery() string {
	q := url.Values{"allow_no_indices": {"true"}, "expand_wildcards": {"open,closed,hidden"}, "ignore_unavailable": {"true"},
		"filter_path": {strings.Join(healthFields, ",")}}
	return q.Encode()
}

// TestRecordShardHealth records what the cluster state says of a restored index's shards,
// from the real node (make record): while a restore (throttled to a crawl) recovers it, and
// after its restore failed (the snapshot's files damaged, as a failing disk would): a primary
// unassigned after a failed recovery, no restore in progress; and a red cluster's health. Both
// indices are restored whole again at the end.
func TestRecordShardHealth(t *testing.T) {
	r := recordingES(t)
	const part1, part2 = "optimize-import-index_v3", "optimize-metadata_v3"
	repos := map[string]string{}
	for _, name := range []string{"record-health-good", "record-health-slow", "record-health-damaged"} {
		repos[name] = filepath.Join(r.runDir, "repo", name)
		settings := `"location":"` + repos[name] + `"`
		if name == "record-health-slow" {
			settings += `,"max_restore_bytes_per_sec":"1kb"`
		}
		r.must("PUT", "/_snapshot/"+name, `{"type":"fs","settings":{`+settings+`}}`)
		r.must("PUT", "/_snapshot/"+name+"/health?wait_for_completion=true", `{"indices":"`+part1+`,`+part2+`","include_global_state":false}`)
	}
	defer func() {
		r.must("DELETE", "/"+part1+","+part2, "")
		r.must("POST", "/_snapshot/record-health-good/health/_restore?wait_for_completion=true", `{"indices":"`+part1+`,`+part2+`","include_global_state":false,"include_aliases":true}`)
		for name := range repos {
			r.must("DELETE", "/_snapshot/"+name+"/health", "")
			r.must("DELETE", "/_snapshot/"+name, "")
		}
	}()

	r.must("DELETE", "/"+part1+","+part2, "")
	r.must("POST", "/_snapshot/record-health-slow/health/_restore", `{"indices":"`+part1+`,`+part2+`","include_global_state":false}`)
	time.Sleep(2 * time.Second)
	for n, index := range []string{part1, part2} {
		r.save(fmt.Sprintf("shards-restoring-%d", n+1), "part "+fmt.Sprint(n+1)+"'s index while a restore (throttled to 1 KB/s) recovers it", "GET", "/_cluster/state/metadata,routing_table,customs/"+index+"?"+healthQuery(), "")
		r.save(fmt.Sprintf("settings-restoring-%d", n+1), "part "+fmt.Sprint(n+1)+"'s index while a restore recovers it: its UUID and creation date (kept from the snapshot)", "GET", "/"+index+"/_settings/index.uuid,index.blocks.write,index.creation_date?expand_wildcards=all&flat_settings=true&ignore_unavailable=true", "")
	}

	damageRepository(t, repos["record-health-damaged"], 64)
	r.must("DELETE", "/"+part2, "")
	r.must("POST", "/_snapshot/record-health-damaged/health/_restore?wait_for_completion=true", `{"indices":"`+part2+`","include_global_state":false}`)
	for i := 0; ; i++ {
		_, b := r.do("GET", "/_cluster/state/routing_table/"+part2+"?filter_path=**.unassigned_info.reason", "")
		if bytes.Contains(b, []byte("ALLOCATION_FAILED")) {
			break
		}
		if i == 100 {
			t.Fatalf("the restore of a damaged snapshot left no failed allocation: %s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.must("PUT", "/rec-red?wait_for_active_shards=0", `{"settings":{"number_of_shards":1,"number_of_replicas":0,"index.routing.allocation.require._name":"no-such-node"}}`)
	r.save("cluster-health-red", "an index whose primary no node may hold: the cluster is red", "GET", "/_cluster/health?filter_path=status", "")
	r.must("DELETE", "/rec-red", "")
	r.save("settings-failed", "part 2's index after its restore from damaged files failed: its UUID", "GET", "/"+part2+"/_settings/index.uuid,index.blocks.write,index.creation_date?expand_wildcards=all&flat_settings=true&ignore_unavailable=true", "")
	r.save("shards-failed", "part 2's index after its restore from damaged files failed: primary unassigned, ALLOCATION_FAILED, no restore in progress for it", "GET", "/_cluster/state/metadata,routing_table,customs/"+part2+"?"+healthQuery(), "")
}

// TestRecordIndexSettings records the settings a restore reads of the installation's indices
// (load-data.sh): UUID, write block and creation date (make record).
func TestRecordIndexSettings(t *testing.T) {
	r := recordingES(t)
	r.save("settings-installation", "UUID, write block and creation date of the optimize installation's indices, as a replace-restore reads them", "GET",
		"/optimize-import-index_v3,optimize-position-based-import-index_v2,optimize-timestamp-based-import-index_v4,optimize-collection_v5,optimize-dashboard_v8,optimize-external-process-variable_v2-000001,optimize-metadata_v3,optimize-process-definition_v6,optimize-process-instance-invoice_v8,optimize-process-instance-order-fulfilment_v8,optimize-process-instance-shipping_v8,optimize-single-process-report_v10/_settings/index.uuid,index.blocks.write,index.creation_date?expand_wildcards=all&flat_settings=true&ignore_unavailable=true", "")
}
