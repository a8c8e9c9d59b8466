package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// noteDoc is the path of backup id's note in the golden tests' jobs index.
func noteDoc(id string) string {
	return "/camunda-optimize-backup-jobs/_doc/" + (&server{cfg: config{IndexPrefix: "optimize"}}).noteDocID(id)
}

// noteRoutes are the requests that write backup id's note where none is stored yet: read it
// (none), create the jobs index (it exists), create the note.
func noteRoutes(id string) map[string]string {
	return map[string]string{"GET " + noteDoc(id): "note-missing", createJobs: "jobs-index-exists", "PUT " + noteDoc(id): "note-created"}
}

// finishBackground waits for the part-2 starts of the server's creates, then stops following
// their part 2s at once (as a shutdown does), so that no read of the background work reaches
// the fake after the test has checked what it got.
func finishBackground(s *server) {
	s.backups.shutdown(context.Background())
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	s.watches.shutdown(stopped)
}

// storedNote is the note a test's fake holds for backup id (kept: see keepDocument), failing
// the test if none was stored.
func storedNote(t *testing.T, fake *fakeES, id string) backupNote {
	t.Helper()
	var note backupNote
	if err := json.Unmarshal(fake.document(noteDoc(id)), &note); err != nil {
		t.Fatalf("the note of backup %s: %v", id, err)
	}
	return note
}

// TestPart2VanishedIsNoted follows part 2 of backup 2 as Elasticsearch answered while the
// repository turned read-only (recorded): running with failed shards, then gone. The note then
// names Elasticsearch's reason, and a GET of the backup (any replica: the note is in
// Elasticsearch) says part 2 vanished and why, not only that it is missing.
func TestPart2VanishedIsNoted(t *testing.T) {
	names := []string{snapshotName("2", "3.9.0", 1), snapshotName("2", "3.9.0", 2)}
	routes := noteRoutes("2")
	routes["GET /_snapshot/test-repo/"+names[1]] = "part2-failing|part2-vanished"
	routes["GET /_snapshot/test-repo/"+names[0]] = "get-part1-only"
	routes[getMarks] = "job-none"
	routes[getBackup("2")] = "state-part1-only"
	fake := newFakeES(t, routes)
	fake.keepDocument(noteDoc("2"), "note-found")
	srv := newTestServer(t, testConfig(fake.srv.URL))
	var part1 getSnapshotsAnswer
	json.Unmarshal(loadRecording(t, "get-part1-only").Body, &part1)

	srv.watchPart2(context.Background(), "2", names, part1.Snapshots[0])

	note := storedNote(t, fake, "2")
	if note.BackupID != "2" || note.Part != 2 || note.Snapshots[names[0]] != part1.Snapshots[0].UUID {
		t.Errorf("got note %+v; want one of part 2 of backup 2, tied to part 1's UUID %s", note, part1.Snapshots[0].UUID)
	}
	var failing getSnapshotsAnswer // the shard failures Elasticsearch reported while part 2 ran
	json.Unmarshal(loadRecording(t, "part2-failing").Body, &failing)
	if len(failing.Snapshots) == 0 || len(failing.Snapshots[0].Failures) == 0 {
		t.Fatal("part2-failing holds no shard failure")
	}
	for _, want := range []string{"vanished from the repository", "AccessDeniedException", failing.Snapshots[0].Failures[0].Index} {
		if !strings.Contains(note.What, want) {
			t.Errorf("got note %q; want it to say %q", note.What, want)
		}
	}
	// A GET of the backup as it now reads: part 1 alone, long after it ended.
	res := serve(t, srv, "GET", "/actuator/backups/2", "", nil)
	var got struct{ State, FailureReason string }
	json.Unmarshal(res.Body.Bytes(), &got)
	if want := "Backup [2] is missing part 2 of 2 (" + names[1] + "): " + note.What + " Delete the backup and take another."; got.State != stateIncomplete || got.FailureReason != want {
		t.Errorf("got %s; want INCOMPLETE with failureReason %q", res.Body, want)
	}
}

// TestPart2NotNoted checks the cases where part 2 is gone and nothing is to be noted: part 2
// ended in the repository (its state says the rest), the whole backup was deleted (part 1 is
// gone too), a DELETE of it is under way (it notes what it did).
func TestPart2NotNoted(t *testing.T) {
	names := []string{snapshotName("12", "3.9.0", 1), snapshotName("12", "3.9.0", 2)}
	for _, tc := range []struct {
		name   string
		routes map[string]string
	}{
		{"part 2 completed", map[string]string{"GET /_snapshot/test-repo/" + names[1]: "get-completed-12"}},
		{"backup deleted", map[string]string{"GET /_snapshot/test-repo/" + names[1]: "part2-vanished", "GET /_snapshot/test-repo/" + names[0]: "get-unknown"}},
		{"a DELETE is under way", map[string]string{"GET /_snapshot/test-repo/" + names[1]: "part2-vanished", "GET /_snapshot/test-repo/" + names[0]: "get-completed-12", getMarks: "marks-backup-12"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeES(t, tc.routes)
			srv := newTestServer(t, testConfig(fake.srv.URL))
			// The delete mark was made at the recording's time: now is within its hour.
			srv.now = func() time.Time { return markTime(t).Add(time.Minute) }
			srv.watchPart2(context.Background(), "12", names, snapshot{Name: names[0], UUID: "u1"})
			for _, r := range fake.sent() {
				if !strings.HasPrefix(r, "GET ") {
					t.Errorf("got %s; want nothing written", r)
				}
			}
		})
	}
}

// markTime is when the delete mark of backup 12 in the recording marks-backup-12 was made.
func markTime(t *testing.T) time.Time {
	t.Helper()
	var doc struct {
		Source deleteMarks `json:"_source"`
	}
	if err := json.Unmarshal(loadRecording(t, "marks-backup-12").Body, &doc); err != nil {
		t.Fatal(err)
	}
	return time.UnixMilli(doc.Source.Backups["12"])
}

// TestPart2RefusedIsNoted starts a backup whose part 2 Elasticsearch refuses (here: the
// repository is gone, as recorded): the note says so with Elasticsearch's reason, tied to
// part 1, and nothing else is written.
func TestPart2RefusedIsNoted(t *testing.T) {
	routes := createRoutes()
	routes[putPart2] = "create-missing-repo"
	fake := newFakeES(t, routes)
	fake.keepDocument(noteDoc("1"), "note-found")
	srv := newTestServer(t, testConfig(fake.srv.URL))
	var part1 getSnapshotsAnswer
	json.Unmarshal(loadRecording(t, "get-part1-done-1").Body, &part1)
	srv.now = func() time.Time { return time.UnixMilli(part1.Snapshots[0].EndMillis).Add(time.Second) }
	if res := serve(t, srv, "POST", "/actuator/backups", `{"backupId": 1}`, nil); res.Code != 202 {
		t.Fatalf("create: got %d %s; want 202", res.Code, res.Body)
	}
	finishBackground(srv)
	note := storedNote(t, fake, "1")
	if note.Part != 2 || note.Snapshots[part1.Snapshots[0].Name] != part1.Snapshots[0].UUID || !strings.Contains(note.What, "Elasticsearch refused to start it") || !strings.Contains(note.What, "repository_missing_exception") {
		t.Errorf("got note %+v; want part 2 refused with Elasticsearch's reason, tied to part 1", note)
	}
	want := []string{getBackup1, readMetadata, resolveIdx, putPart1, pollPart1, putPart2, "GET " + noteDoc("1"), createJobs, "PUT " + noteDoc("1")}
	if diff := cmp.Diff(want, fake.sent()); diff != "" {
		t.Errorf("Elasticsearch requests (-want +got):\n%s", diff)
	}
}

// TestPart2TooLateIsNoted starts a backup whose part 1 the sidecar sees ended only after the
// grace period: part 2 is not started, and the note says why.
func TestPart2TooLateIsNoted(t *testing.T) {
	fake := newFakeES(t, createRoutes())
	fake.keepDocument(noteDoc("1"), "note-found")
	srv := newTestServer(t, testConfig(fake.srv.URL)) // testNow: long after part 1 ended
	if res := serve(t, srv, "POST", "/actuator/backups", `{"backupId": 1}`, nil); res.Code != 202 {
		t.Fatalf("create: got %d %s; want 202", res.Code, res.Body)
	}
	finishBackground(srv)
	if note := storedNote(t, fake, "1"); note.Part != 2 || !strings.Contains(note.What, "it was not started") || !strings.Contains(note.What, "OPTIMIZE_BACKUP_PART2_GRACE") {
		t.Errorf("got note %+v; want part 2 not started, past the grace period", note)
	}
	for _, r := range fake.sent() {
		if r == putPart2 {
			t.Errorf("part 2 was started; want it not started")
		}
	}
}

// TestNoteOfAnotherBackup checks that a note is not taken for the backup that now has its ID
// (deleted and taken again: other UUIDs), nor read at all for a backup that is not
// INCOMPLETE.
func TestNoteOfAnotherBackup(t *testing.T) {
	fake := newFakeES(t, map[string]string{getBackup("2"): "state-part1-only", "GET " + noteDoc("2"): "note-found", getBackup1: "state-completed"})
	srv := newTestServer(t, testConfig(fake.srv.URL))
	res := serve(t, srv, "GET", "/actuator/backups/2", "", nil)
	var got struct{ State, FailureReason string }
	json.Unmarshal(res.Body.Bytes(), &got)
	if got.State != stateIncomplete || strings.Contains(got.FailureReason, "vanished") || !strings.Contains(got.FailureReason, "no sidecar recorded") {
		t.Errorf("got %s; want INCOMPLETE with the reason the snapshots give, not another backup's note", res.Body)
	}
	serve(t, srv, "GET", "/actuator/backups/1", "", nil)
	if diff := cmp.Diff([]string{getBackup("2"), "GET " + noteDoc("2"), getBackup1}, fake.sent()); diff != "" {
		t.Errorf("Elasticsearch requests (-want +got):\n%s", diff)
	}
}

// TestScheduledRunSaysWhy checks that the scheduler's wait for its backup's end gives an
// INCOMPLETE backup's reason from its note, as GET does: the run's record and log keep it.
func TestScheduledRunSaysWhy(t *testing.T) {
	routes := noteRoutes("2")
	routes[getBackup("2")] = "get-part1-only"
	fake := newFakeES(t, routes)
	fake.keepDocument(noteDoc("2"), "note-found")
	srv := newTestServer(t, testConfig(fake.srv.URL))
	var part1 getSnapshotsAnswer
	json.Unmarshal(loadRecording(t, "get-part1-only").Body, &part1)
	srv.noteBackup(context.Background(), "2", part1.Snapshots, 2, "Elasticsearch refused to start it.")
	info, err := srv.waitBackupEnd(context.Background(), "2")
	if err != nil || info.State != stateIncomplete || !strings.HasSuffix(derefString(info.FailureReason), "): Elasticsearch refused to start it. Delete the backup and take another.") {
		t.Errorf("got %s %q, %v; want INCOMPLETE with the note's reason", info.State, derefString(info.FailureReason), err)
	}
}
