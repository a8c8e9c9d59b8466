package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// partNames are the two snapshot names of a backup the sidecar made with this ID.
func partNames(id string) []string {
	return []string{snapshotName(id, "3.9.0", 1), snapshotName(id, "3.9.0", 2)}
}

// detailNames returns the snapshot names a backup info reports, in order.
func detailNames(details []snapshotDetail) []string {
	names := make([]string, len(details))
	for i, d := range details {
		names[i] = d.SnapshotName
	}
	return names
}

// TestIntegrationIDPairs makes, on the real node, backups whose IDs are prefixes of each other,
// nightly and nightly_1 (whose snapshots the pattern camunda_optimize_nightly_* also matches)
// and 1 and 12, plus _nightly (a leading '_' Elasticsearch accepts, since the snapshot name
// starts with camunda_). It checks that none sees another's snapshots: the "ID exists" check of
// create, GET on both route families, the list, a restore and a delete. nightly_1 is made first
// so that nightly's create has to look past it.
func TestIntegrationIDPairs(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("idpairs")
	sc := startSidecar(t, es.sidecarEnv(repo))
	for _, c := range []struct{ route, body, id string }{
		{"/actuator/backup", `{"backupId": "nightly_1"}`, "nightly_1"},
		{"/actuator/backup", `{"backupId": "nightly"}`, "nightly"},
		{"/actuator/backups", `{"backupId": 12}`, "12"},
		{"/actuator/backups", `{"backupId": 1}`, "1"},
		{"/actuator/backup", `{"backupId": "_nightly"}`, "_nightly"},
	} {
		status, body := sc.call("POST", c.route, c.body)
		if want := map[string]int{"/actuator/backup": 200, "/actuator/backups": 202}[c.route]; status != want {
			t.Fatalf("create %s on %s: got %d %s; want %d", c.id, c.route, status, body, want)
		}
		sc.waitState(c.id, stateCompleted)
	}
	ids := []string{"nightly_1", "nightly", "12", "1", "_nightly"}

	// The "ID exists" check names exactly the ID's own snapshots.
	for _, c := range []struct{ route, body, id string }{
		{"/actuator/backup", `{"backupId": "nightly"}`, "nightly"},
		{"/actuator/backup", `{"backupId": "1"}`, "1"},
		{"/actuator/backups", `{"backupId": 1}`, "1"},
	} {
		status, body := sc.call("POST", c.route, c.body)
		var e apiError
		json.Unmarshal(body, &e)
		want := fmt.Sprintf("A backup with ID [%s] already exists. Found snapshots: [%s, %s]", c.id, partNames(c.id)[1], partNames(c.id)[0])
		if status != 409 || e.DetailedMessage != want {
			t.Errorf("create %s again on %s: got %d %s; want 409 with detailedMessage %q", c.id, c.route, status, body, want)
		}
	}

	// GET on both families: every ID, its own two snapshots.
	for _, id := range ids {
		for _, base := range []string{"/actuator/backup/", "/actuator/backups/"} {
			status, body, info := sc.info(base + id)
			if status != 200 || info.State != stateCompleted || !slices.Equal(detailNames(info.Details), partNames(id)) {
				t.Errorf("GET %s%s: got %d %s; want 200 COMPLETED with exactly %v", base, id, status, body, partNames(id))
			}
		}
	}

	// The list: one entry per ID, each with its own two snapshots.
	list := func() map[string][]string {
		t.Helper()
		status, body, infos := sc.infos("/actuator/backup")
		if status != 200 {
			t.Fatalf("list: got %d %s; want 200", status, body)
		}
		out := map[string][]string{}
		for _, info := range infos {
			out[info.BackupID.String()] = detailNames(info.Details)
		}
		return out
	}
	want := map[string][]string{}
	for _, id := range ids {
		want[id] = partNames(id)
	}
	if diff := cmp.Diff(want, list()); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	// Restore nightly by the runbook (its indices deleted first, as checkRestore does): the
	// job restores exactly nightly's two snapshots and every document comes back.
	before, others := es.installationPrint(), es.othersPrint()
	es.deleteIndices()
	if status, body := sc.call("POST", "/actuator/backup/nightly/restore", ""); status != 202 {
		t.Fatalf("restore nightly: got %d %s; want 202", status, body)
	}
	job := sc.waitRestore("nightly")
	var restored []string
	for _, p := range job.Snapshots {
		restored = append(restored, p.SnapshotName)
	}
	if job.State != restoreCompleted || !slices.Equal(restored, partNames("nightly")) {
		t.Errorf("restore nightly: got %+v; want COMPLETED from exactly %v", job, partNames("nightly"))
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Fatalf("restored data differs (-backed up +restored):\n%s", diff)
	}
	if diff := cmp.Diff(others, es.othersPrint()); diff != "" {
		t.Errorf("indices outside the installation changed (-before +after):\n%s", diff)
	}
	if status, body := sc.call("GET", "/actuator/backups/nightly_1/restore", ""); status != 404 {
		t.Errorf("restore status of nightly_1 after restoring nightly: got %d %s; want 404", status, body)
	}

	// Delete nightly and 1: nightly_1 and 12 keep both snapshots.
	for _, path := range []string{"/actuator/backups/nightly", "/actuator/backup/1"} {
		if status, body := sc.call("DELETE", path, ""); status != 204 {
			t.Fatalf("DELETE %s: got %d %s; want 204", path, status, body)
		}
	}
	var left []string
	for _, s := range es.snapshots(repo, "*") {
		left = append(left, s.Name)
	}
	wantLeft := slices.Concat(partNames("_nightly"), partNames("nightly_1"), partNames("12"))
	slices.Sort(wantLeft)
	if diff := cmp.Diff(wantLeft, left); diff != "" {
		t.Errorf("snapshots after deleting nightly and 1 (-want +got):\n%s", diff)
	}
	for _, id := range []string{"nightly", "1"} {
		if status, body := sc.call("GET", "/actuator/backup/"+id, ""); status != 404 || !strings.Contains(string(body), "No Optimize backup with ID ["+id+"] could be found.") {
			t.Errorf("GET %s after its delete: got %d %s; want 404", id, status, body)
		}
	}
	delete(want, "nightly")
	delete(want, "1")
	if diff := cmp.Diff(want, list()); diff != "" {
		t.Errorf("list after delete (-want +got):\n%s", diff)
	}
}
