package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRecordBackupNotes records what the sidecar reads when part 2 of a backup vanishes (make
// record): part 2 running with failed shards once the repository turned read-only, part 2
// gone, backup 2 as GET then reads it, and its note, written by the sidecar's own code; and a
// note that does not exist and one created.
func TestRecordBackupNotes(t *testing.T) {
	r := recordingES(t)
	jobs := "/camunda-optimize-backup-jobs"
	r.do("DELETE", jobs, "")
	t.Cleanup(func() { r.do("DELETE", jobs, "") })
	repo := "record-note-repo"
	location := r.throttledRepo(repo, "100kb")
	body := func(part int, indices []string) string {
		b, _ := json.Marshal(indices)
		return fmt.Sprintf(`{"indices":%s,"include_global_state":false,"feature_states":["none"],"metadata":{"backupId":"2","version":"3.9.0","partNo":%d,"partCount":2,"createdBy":"optimize-backup","indexPrefix":"optimize"}}`, b, part)
	}
	names := []string{snapshotName("2", "3.9.0", 1), snapshotName("2", "3.9.0", 2)}
	r.must("PUT", "/_snapshot/"+repo+"/"+names[0]+"?wait_for_completion=true", body(1, optimizeIndices[:3]))
	r.must("PUT", "/_snapshot/"+repo+"/"+names[1], body(2, optimizeIndices[3:]))
	r.waitSnapshot(repo, names[1], "running", func(state string) bool { return state == "IN_PROGRESS" })
	writable := readOnly(t, location)

	// As the sidecar follows part 2 (snapshotByName): running with failed shards, then gone.
	path := "/_snapshot/" + repo + "/" + names[1] + snapshotQuery(0, "")
	var failing getSnapshotsAnswer
	for deadline := time.Now().Add(30 * time.Second); ; {
		status, b := r.do("GET", path, "")
		failing = getSnapshotsAnswer{}
		json.Unmarshal(b, &failing)
		if status == 200 && len(failing.Snapshots) == 1 && failing.Snapshots[0].State == "IN_PROGRESS" && len(failing.Snapshots[0].Failures) > 0 {
			r.write("part2-failing", "backup 2: part 2 IN_PROGRESS, shards failing: the repository was made read-only (chmod -R a-w) while it ran", "GET", path, status, b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("part 2 never reported a failed shard while running: last answer %d %s", status, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.waitSnapshot(repo, names[1], "gone", func(state string) bool { return state == "" })
	r.save("part2-vanished", "backup 2: part 2 gone, Elasticsearch could not finish it in the read-only repository", "GET", path, "")
	writable()

	// The note, written by the code that writes it, as a GET of the backup reads it.
	cfg := testConfig(r.url)
	cfg.Repository = repo
	srv := newTestServer(t, cfg)
	srv.notePart2Vanished(context.Background(), srv.log, "2", names, testNow, failing.Snapshots[0].Failures)
	r.save("note-found", "the note of backup 2: part 2 vanished (written by notePart2Vanished)", "GET", jobs+"/_doc/"+srv.noteDocID("2"), "")
	r.save("state-part2-vanished", "backup 2: part 1 SUCCESS, part 2 vanished, as GET reads it", "GET", "/_snapshot/"+repo+"/camunda_optimize_2_*"+stateQuery(), "")
	r.save("note-missing", "no note of backup 3 (the jobs index exists)", "GET", jobs+"/_doc/"+srv.noteDocID("3"), "")
	note := backupNote{BackupID: "3", Snapshots: map[string]string{names[0]: "u1"}, Part: 2, What: "recorded.", docStamp: docStamp{Heartbeat: testNow.UnixMilli(), Rev: "rec"}}
	b, err := json.Marshal(note)
	if err != nil {
		t.Fatal(err)
	}
	r.save("note-created", "the note of backup 3, created", "PUT", jobs+"/_doc/"+srv.noteDocID("3")+"?op_type=create&refresh=false", string(b))
	if !strings.Contains(string(loadRecording(t, "note-found").Body), "AccessDeniedException") {
		t.Errorf("note-found does not carry Elasticsearch's reason")
	}
}
