package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// optimizeMadeParts are the indices Optimize names when it snapshots the test installation
// (load-data.sh): its aliases, not the physical _vN indices; part 1 the import indices, part 2
// every other alias of the installation (not optimize-east's, not the foreign optimize-logs).
var optimizeMadeParts = [2][]string{
	{"optimize-import-index", "optimize-position-based-import-index", "optimize-timestamp-based-import-index"},
	{"optimize-collection", "optimize-dashboard", "optimize-external-process-variable", "optimize-metadata", "optimize-process-definition",
		"optimize-process-instance-invoice", "optimize-process-instance-order-fulfilment", "optimize-process-instance-shipping", "optimize-single-process-report"},
}

// TestIntegrationOptimizeMade makes a backup exactly as Optimize does, straight on the real
// node: both parts requested at once, indices named by alias, include_global_state false, no
// metadata, wait_for_completion=true. A sidecar that replaces Optimize must then report it
// COMPLETED on both route families, list it, restore it with no document lost or changed, and
// delete it.
func TestIntegrationOptimizeMade(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("optimize-made")
	const id = "42"
	names := partNames(id)

	var wg sync.WaitGroup
	for i, indices := range optimizeMadeParts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Not es.do: a failure here must not call t.Fatal outside the test's goroutine.
			body, _ := json.Marshal(map[string]any{"indices": indices, "include_global_state": false})
			req, _ := http.NewRequest("PUT", es.url+"/_snapshot/"+repo+"/"+names[i]+"?wait_for_completion=true", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("Optimize's create of %s: %v", names[i], err)
				return
			}
			defer res.Body.Close()
			if answer, _ := io.ReadAll(res.Body); res.StatusCode != 200 {
				t.Errorf("Optimize's create of %s: got %d %s; want 200", names[i], res.StatusCode, answer)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	snaps := es.snapshots(repo, "*")
	for i, s := range snaps {
		if s.State != "SUCCESS" || len(s.Metadata) != 0 {
			t.Fatalf("snapshot %s: got state %s, metadata %v; want SUCCESS without metadata, as Optimize makes it", s.Name, s.State, s.Metadata)
		}
		// Elasticsearch records the physical indices behind the aliases.
		if got := len(s.Indices); got != len(optimizeMadeParts[i]) {
			t.Fatalf("snapshot %s holds %d indices %v; want %d", s.Name, got, s.Indices, len(optimizeMadeParts[i]))
		}
	}

	sc := startSidecar(t, es.sidecarEnv(repo))
	for _, base := range []string{"/actuator/backup/", "/actuator/backups/"} {
		status, body, info := sc.info(base + id)
		if status != 200 || info.State != stateCompleted || !slices.Equal(detailNames(info.Details), names) {
			t.Errorf("GET %s%s: got %d %s; want 200 COMPLETED with %v", base, id, status, body, names)
		}
	}
	status, _, list := sc.infos("/actuator/backups")
	var got []string
	for _, info := range list {
		got = append(got, fmt.Sprintf("%s %s %v", info.BackupID, info.State, detailNames(info.Details)))
	}
	if diff := cmp.Diff([]string{fmt.Sprintf("%s %s %v", id, stateCompleted, names)}, got); status != 200 || diff != "" {
		t.Errorf("list: got %d, (-want +got):\n%s", status, diff)
	}

	// Restore by the runbook: no index of the installation left, then restore; every document
	// and alias comes back, nothing outside the installation changes.
	before, others := es.installationPrint(), es.othersPrint()
	es.deleteIndices()
	if status, body := sc.call("POST", "/actuator/backups/"+id+"/restore", ""); status != 202 {
		t.Fatalf("restore: got %d %s; want 202", status, body)
	}
	if job := sc.waitRestore(id); job.State != restoreCompleted {
		t.Fatalf("restore: got %+v; want COMPLETED", job)
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Fatalf("restored data differs (-backed up +restored):\n%s", diff)
	}
	if diff := cmp.Diff(others, es.othersPrint()); diff != "" {
		t.Errorf("indices outside the installation changed (-before +after):\n%s", diff)
	}

	if status, body := sc.call("DELETE", "/actuator/backup/"+id, ""); status != 204 {
		t.Fatalf("delete: got %d %s; want 204", status, body)
	}
	if left := es.snapshots(repo, "*"); len(left) != 0 {
		t.Errorf("after delete: got snapshots %v; want none", left)
	}
}
