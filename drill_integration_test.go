package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// waitDrill polls GET .../verify until the drill of the backup is no longer RUNNING.
func (s sidecar) waitDrill(id string) drillResult {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		status, body := s.call("GET", "/actuator/backups/"+id+"/verify", "")
		var r drillResult
		json.Unmarshal(body, &r)
		if status == 200 && r.State != drillRunning {
			return r
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("drill of %s: still %d %s after 90 s", id, status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// drillIndicesLeft returns the temporary indices of drills still in Elasticsearch.
func (es realES) drillIndicesLeft() []string {
	es.t.Helper()
	var resolved struct {
		Indices []struct{ Name string } `json:"indices"`
	}
	json.Unmarshal(es.must("GET", "/_resolve/index/backup-drill-*,drill-*?expand_wildcards=all", ""), &resolved)
	var out []string
	for _, ix := range resolved.Indices {
		out = append(out, ix.Name)
	}
	return out
}

// assertDrillLeftNothing fails the test if a drill left temporary indices or changed the live
// installation (document hashes) since before.
func (es realES) assertDrillLeftNothing(t *testing.T, before map[string]indexPrint) {
	t.Helper()
	if left := es.drillIndicesLeft(); len(left) > 0 {
		t.Errorf("temporary indices left after the drill: %v", left)
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Errorf("the drill changed the live installation (-before +after):\n%s", diff)
	}
}

// TestIntegrationDrill drills a good backup on the real node: PASSED, every index of the
// backup restored and searched with the live document counts, schemaVersion checked, the
// temporary indices deleted, the live indices of every installation byte-identical (document
// hashes) before and after, a DELETE of the backup refused while the drill runs, the result in
// the backup's details and in the metrics. A restore drill then fails, with its reason, on a
// backup whose part 2 was deleted, and one stopped midway by SIGTERM ends FAILED with its
// temporary indices deleted.
func TestIntegrationDrill(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("it-drill")
	env := es.sidecarEnv(repo)
	env["OPTIMIZE_BACKUP_PART2_GRACE"] = "1s" // a backup without part 2 is INCOMPLETE a second later
	sc := startSidecar(t, env)
	sc.backupNow("1")
	before, othersBefore := es.installationPrint(), es.othersPrint()

	if status, b := sc.call("POST", "/actuator/backups/1/verify", ""); status != 202 {
		t.Fatalf("POST verify: got %d %s; want 202", status, b)
	}
	if status, b := sc.call("DELETE", "/actuator/backups/1", ""); status != 409 || !strings.Contains(string(b), "a drill restores it") {
		t.Errorf("DELETE during the drill: got %d %s; want 409 naming the drill", status, b)
	}
	if status, b := sc.call("POST", "/actuator/backups/1/verify", ""); status != 409 {
		t.Errorf("a second drill: got %d %s; want 409 (one at a time)", status, b)
	}
	r := sc.waitDrill("1")
	if r.State != drillPassed || r.FailureReason != nil || r.SchemaVersion != "3.9.0-SNAPSHOT" {
		t.Fatalf("got drill %+v; want PASSED with schemaVersion 3.9.0-SNAPSHOT", r)
	}
	if len(r.Indices) != len(before) {
		t.Errorf("drill restored %d indices; want the installation's %d", len(r.Indices), len(before))
	}
	for _, ix := range r.Indices {
		if ix.Documents == nil || *ix.Documents != int64(before[ix.Index].Docs) {
			t.Errorf("index %s: drill counted %v documents; want the live %d", ix.Index, ix.Documents, before[ix.Index].Docs)
		}
		if strings.HasPrefix(ix.TemporaryIndex, "optimize-") {
			t.Errorf("temporary index %s is inside the prefix optimize-", ix.TemporaryIndex)
		}
	}
	for _, sn := range r.Snapshots {
		if sn.ShardsRestored != sn.ShardsTotal || sn.ShardsTotal == 0 {
			t.Errorf("snapshot %s: %d of %d shards restored; want all", sn.Snapshot, sn.ShardsRestored, sn.ShardsTotal)
		}
	}
	es.assertDrillLeftNothing(t, before)
	if diff := cmp.Diff(othersBefore, es.othersPrint()); diff != "" {
		t.Errorf("the drill changed another installation's or a foreign index (-before +after):\n%s", diff)
	}
	_, body := sc.call("GET", "/actuator/backups/1", "")
	var info struct{ LastVerification *drillResult }
	if json.Unmarshal(body, &info); info.LastVerification == nil || info.LastVerification.State != drillPassed {
		t.Errorf("GET backup 1: got %s; want lastVerification PASSED in its details", body)
	}
	if got := sc.metricValue(`optimize_backup_last_verification_success`); got != "1" {
		t.Errorf("got last verification success %s; want 1", got)
	}

	// Part 2 deleted in Elasticsearch: the backup is INCOMPLETE, the drill says so.
	sc.backupNow("2")
	es.must("DELETE", "/_snapshot/"+repo+"/"+snapshotName("2", "3.9.0", 2), "")
	sc.waitState("2", stateIncomplete)
	if status, b := sc.call("POST", "/actuator/backups/2/verify", ""); status != 202 {
		t.Fatalf("POST verify of backup 2: got %d %s; want 202", status, b)
	}
	if r := sc.waitDrill("2"); r.State != drillFailed || r.FailureReason == nil || !strings.Contains(*r.FailureReason, "the backup is INCOMPLETE") {
		t.Errorf("drill of a backup without part 2: got %+v; want FAILED saying the backup is INCOMPLETE", r)
	}
	if got := sc.metricValue(`optimize_backup_last_verification_success`); got != "0" {
		t.Errorf("got last verification success %s; want 0 after a failed drill", got)
	}

	// SIGTERM midway: the drill ends FAILED and its temporary indices go.
	// The sidecar lets go of a drill a moment after its document says FAILED.
	for end := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		status, b := sc.call("POST", "/actuator/backups/1/verify", "")
		if status == 202 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("POST verify again: got %d %s; want 202", status, b)
		}
	}
	time.Sleep(300 * time.Millisecond)
	sc.stop()
	again := startSidecar(t, env)
	if r := again.waitDrill("1"); r.State != drillFailed || r.FailureReason == nil || !strings.Contains(*r.FailureReason, "the sidecar stopped during the drill") {
		t.Errorf("drill stopped by SIGTERM: got %+v; want FAILED saying the sidecar stopped", r)
	}
	es.assertDrillLeftNothing(t, before)
}

// TestIntegrationDrillDamagedRepository damages the data files of a backup in the fs
// repository (as a failing disk would): the drill fails, naming the snapshot whose shards could
// not be restored, deletes what it restored, and leaves the live indices as they were.
func TestIntegrationDrillDamagedRepository(t *testing.T) {
	es := needES(t)
	// A repository of its own: fs repositories share files between snapshots of the same data.
	repo := es.newRepo("it-drill-damaged")
	sc := startSidecar(t, es.sidecarEnv(repo))
	sc.backupNow("3")
	before := es.installationPrint()
	var settings map[string]struct {
		Settings struct{ Location string } `json:"settings"`
	}
	json.Unmarshal(es.must("GET", "/_snapshot/"+repo, ""), &settings)
	damageRepository(t, settings[repo].Settings.Location, 1024)
	if status, b := sc.call("POST", "/actuator/backups/3/verify", ""); status != 202 {
		t.Fatalf("POST verify: got %d %s; want 202", status, b)
	}
	r := sc.waitDrill("3")
	if r.State != drillFailed || r.FailureReason == nil || !strings.Contains(*r.FailureReason, "could not be restored") {
		t.Errorf("drill of a damaged backup: got %+v; want FAILED naming shards that could not be restored", r)
	}
	es.assertDrillLeftNothing(t, before)
}

// damageRepository flips bytes in the middle of every data file of an fs repository larger
// than minSize, as a failing disk would, and fails the test if it found none.
func damageRepository(t *testing.T, location string, minSize int64) {
	t.Helper()
	damaged := 0
	filepath.Walk(filepath.Join(location, "indices"), func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasPrefix(fi.Name(), "__") && fi.Size() > minSize {
			b, _ := os.ReadFile(path)
			for i := len(b) / 2; i < len(b)/2+32; i++ {
				b[i] ^= 0xFF
			}
			if os.WriteFile(path, b, fi.Mode()) == nil {
				damaged++
			}
		}
		return nil
	})
	if damaged == 0 {
		t.Fatal("found no data file to damage in the repository")
	}
}

// TestIntegrationDrillAbandoned leaves a drill as a killed sidecar would (SIGKILL: its
// document RUNNING, never renewed, a temporary index restored): a running sidecar takes it over
// once the document has not changed for its stale time, ends it FAILED and deletes its
// temporary index, and nothing else.
func TestIntegrationDrillAbandoned(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("it-drill-killed")
	before, othersBefore := es.installationPrint(), es.othersPrint()
	temp := (&server{cfg: config{IndexPrefix: "optimize"}}).drillIndexPrefix() + "optimize-metadata_v3"
	es.must("PUT", "/"+temp, `{"settings":{"number_of_shards":1,"number_of_replicas":0}}`)
	es.do("PUT", "/camunda-optimize-backup-jobs", `{"settings":{"number_of_shards":1,"auto_expand_replicas":"0-1","hidden":true}}`)
	start := time.Now().Add(-10 * time.Minute).UTC()
	doc := drillDoc{drillResult: drillResult{BackupID: "9", State: drillRunning, Step: "restore-part-2", StartTime: &start, Version: "3.9.0",
		Indices: []drillIndex{{Snapshot: "camunda_optimize_9_3.9.0_part_2_of_2", Index: "optimize-metadata_v3", TemporaryIndex: temp}}},
		Repository: repo, leaseStamp: leaseStamp{Owner: "killed/1/abcd", docStamp: docStamp{Heartbeat: start.UnixMilli(), Rev: "killed"}}}
	b, _ := json.Marshal(doc)
	es.must("PUT", "/camunda-optimize-backup-jobs/_doc/drill-optimize?refresh=true", string(b))
	t.Cleanup(func() { es.do("DELETE", "/camunda-optimize-backup-jobs/_doc/drill-optimize", "") })

	// The watcher takes a drill over once its document has not changed for 2 × 2 s + 15 s on
	// the watcher's own clock.
	env := es.sidecarEnv(repo)
	env["OPTIMIZE_BACKUP_ELASTICSEARCH_TIMEOUT"] = "2s"
	sc := startSidecar(t, env)
	r := sc.waitDrill("9")
	if r.State != drillFailed || r.FailureReason == nil || !strings.Contains(*r.FailureReason, "killed/1/abcd") {
		t.Errorf("abandoned drill: got %+v; want FAILED naming the silent sidecar", r)
	}
	es.assertDrillLeftNothing(t, before)
	if diff := cmp.Diff(othersBefore, es.othersPrint()); diff != "" {
		t.Errorf("ending the drill changed other indices (-before +after):\n%s", diff)
	}
}
