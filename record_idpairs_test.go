package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestRecordIDPairs records, from the real node (make record), the answers behind the golden
// tests of IDs that are prefixes of each other: nightly and nightly_1 (the pattern
// camunda_optimize_nightly_* matches both), 1 and 12; and Elasticsearch's own refusals of a
// snapshot name ('#') and of an ID too long for its request line. nightly is made as Optimize
// makes its snapshots (indices by alias, no metadata), the others as the sidecar does.
func TestRecordIDPairs(t *testing.T) {
	r := recordingES(t)
	repo := r.newRepo("record-ids-repo")
	var made []string
	sidecarMade := func(id string) {
		for part, index := range []string{"optimize-import-index_v3", "optimize-metadata_v3"} {
			name := snapshotName(id, "3.9.0", part+1)
			r.must("PUT", "/_snapshot/"+repo+"/"+name+"?wait_for_completion=true", fmt.Sprintf(snapshotBody, index, id, part+1))
			made = append(made, name)
		}
	}
	// A backup as create, DELETE and restore read it (ids-get-*), and as a GET reads it
	// (ids-state-*: only stateFields).
	get := func(file, note, id string) {
		r.save(file, note, "GET", "/_snapshot/"+repo+"/"+seg(snapshotPrefix(id))+"*"+snapshotQuery(0, ""), "")
	}
	state := func(file, note, id string) {
		r.save(file, note+", as GET reads it", "GET", "/_snapshot/"+repo+"/"+seg(snapshotPrefix(id))+"*"+stateQuery(), "")
	}

	sidecarMade("nightly_1")
	get("ids-get-nightly-longer-only", "pattern of nightly when only nightly_1 exists: nightly_1's two snapshots", "nightly")
	state("ids-state-nightly-longer-only", "pattern of nightly when only nightly_1 exists: nightly_1's two snapshots", "nightly")
	for part, index := range []string{"optimize-import-index", "optimize-metadata"} {
		name := snapshotName("nightly", "3.9.0", part+1)
		r.must("PUT", "/_snapshot/"+repo+"/"+name+"?wait_for_completion=true", fmt.Sprintf(`{"indices":[%q],"include_global_state":false}`, index))
		made = append(made, name)
	}
	sidecarMade("1")
	sidecarMade("12")
	get("ids-get-nightly", "pattern of nightly: nightly's two snapshots (made as Optimize makes them) and nightly_1's two", "nightly")
	state("ids-state-nightly", "pattern of nightly: nightly's two snapshots (made as Optimize makes them) and nightly_1's two", "nightly")
	state("ids-state-nightly_1", "pattern of nightly_1: its two snapshots", "nightly_1")
	get("ids-get-1", "pattern of 1 while 12 exists: 1's two snapshots", "1")
	state("ids-state-1", "pattern of 1 while 12 exists: 1's two snapshots", "1")
	state("ids-state-12", "pattern of 12 while 1 exists: 12's two snapshots", "12")
	r.save("ids-list", "every camunda_optimize_* snapshot of nightly, nightly_1, 1 and 12", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+listQuery(), "")

	// Elasticsearch's refusals, which the ID rules keep the sidecar from provoking.
	r.save("ids-create-invalid-name", "create a snapshot whose name holds '#'", "PUT", "/_snapshot/"+repo+"/"+seg(snapshotName("a#b", "3.9.0", 1))+"?master_timeout=30s&wait_for_completion=false",
		fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "a#b", 1))
	long := strings.Repeat("a", maxIDChars)
	get("ids-get-too-long", "pattern of an ID of 3996 characters: the request line is over 4 KB", long)

	deleted := map[string]bool{}
	for _, id := range []string{"nightly", "1"} {
		names := []string{snapshotName(id, "3.9.0", 1), snapshotName(id, "3.9.0", 2)}
		r.save("ids-delete-"+id, "delete exactly "+id+"'s two snapshots", "DELETE", "/_snapshot/"+repo+"/"+strings.Join(names, ",")+"?master_timeout=30s", "")
		deleted[names[0]], deleted[names[1]] = true, true
	}
	for _, name := range made {
		if !deleted[name] {
			r.must("DELETE", "/_snapshot/"+repo+"/"+name, "")
		}
	}
	r.must("DELETE", "/_snapshot/"+repo, "")
}
