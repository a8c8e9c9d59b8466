package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// throttledRepo registers a fresh fs repository whose snapshots write at most rate a second, so
// that a snapshot of the test data runs for seconds; it returns the repository's directory.
func (es realES) throttledRepo(name, rate string) string {
	es.t.Helper()
	location := filepath.Join(es.runDir, "repo", fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))
	es.must("PUT", "/_snapshot/"+name, fmt.Sprintf(`{"type":"fs","settings":{"location":%q,"max_snapshot_bytes_per_sec":%q}}`, location, rate))
	es.t.Cleanup(func() { es.do("DELETE", "/_snapshot/"+name, "") })
	return location
}

// readOnly takes the write permission of everyone off dir and everything in it (chmod -R a-w),
// and returns the function that gives every entry its mode back, which also runs at the end of
// the test whatever happens. The tests run as root, whom permissions do not stop, but
// testenv/es-start.sh runs Elasticsearch as an unprivileged user, whose writes they stop.
func readOnly(t testing.TB, dir string) (restore func()) {
	t.Helper()
	modes := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		modes[path] = info.Mode().Perm()
		return os.Chmod(path, info.Mode().Perm()&^0o222)
	})
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		for path, mode := range modes {
			if err := os.Chmod(path, mode); err != nil && !os.IsNotExist(err) {
				t.Errorf("give %s its mode back: %v", path, err)
			}
		}
	}
	t.Cleanup(restore)
	if err != nil {
		t.Fatalf("make %s read-only: %v", dir, err)
	}
	return restore
}

// waitSnapshot polls the snapshot until until(state) holds ("" once it is gone), for up to 60 s.
func (es realES) waitSnapshot(repo, name, what string, until func(state string) bool) {
	es.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; {
		state := ""
		if status, b := es.do("GET", "/_snapshot/"+repo+"/"+name, ""); status == 200 {
			var answer getSnapshotsAnswer
			json.Unmarshal(b, &answer)
			if len(answer.Snapshots) == 1 {
				state = answer.Snapshots[0].State
			}
		}
		if until(state) {
			return
		}
		if time.Now().After(deadline) {
			es.t.Fatalf("snapshot %s: got state %q after 60 s; want it %s", name, state, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIntegrationPart2Vanishes makes the repository read-only while part 2 runs (issue 22):
// Elasticsearch fails its shards and then drops it from the repository, with nothing in its
// API to tell. The sidecar that started it records why, so that a second replica, which saw
// nothing of it, reports the backup INCOMPLETE naming part 2 and Elasticsearch's reason. With
// the repository writable again, the next backup completes.
func TestIntegrationPart2Vanishes(t *testing.T) {
	es := needES(t)
	repo := "part2-vanishes"
	// Part 2 holds about 700 KB of the test data: 100 KB/s keeps it running for seconds.
	location := es.throttledRepo(repo, "100kb")
	env := es.sidecarEnv(repo)
	// A lone part 1 reads IN_PROGRESS for the grace period after it ended, whatever became of
	// part 2: a short one, so that the test need not wait two minutes.
	env["OPTIMIZE_BACKUP_PART2_GRACE"] = "5s"
	sc := startSidecar(t, env)
	if status, body := sc.call("POST", "/actuator/backups", `{"backupId": 1}`); status != 202 {
		t.Fatalf("create: got %d %s; want 202", status, body)
	}
	part2 := snapshotName("1", "3.9.0", 2)
	es.waitSnapshot(repo, part2, "running", func(state string) bool { return state == "IN_PROGRESS" })
	writable := readOnly(t, location)
	es.waitSnapshot(repo, part2, "gone", func(state string) bool { return state == "" })
	writable()

	// A second replica, started after it all: what it reports comes from Elasticsearch alone.
	replica := startSidecar(t, env)
	var reason string
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, body, info := replica.info("/actuator/backups/1")
		var answer struct{ FailureReason string }
		json.Unmarshal(body, &answer)
		reason = answer.FailureReason
		if info.State == stateIncomplete && strings.Contains(reason, "vanished") || time.Now().After(deadline) {
			if info.State != stateIncomplete {
				t.Fatalf("second replica: got %s; want INCOMPLETE", body)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"missing part 2 of 2 (" + part2 + ")", "vanished from the repository", "AccessDeniedException"} {
		if !strings.Contains(reason, want) {
			t.Errorf("second replica: got failureReason %q; want it to say %q", reason, want)
		}
	}
	if _, body := sc.call("GET", "/actuator/backups/1", ""); !strings.Contains(string(body), reason) {
		t.Errorf("first sidecar: got %s; want the same failureReason as the second replica", body)
	}

	if status, body := replica.call("POST", "/actuator/backups", `{"backupId": 2}`); status != 202 {
		t.Fatalf("create after the repository is writable again: got %d %s; want 202", status, body)
	}
	replica.waitState("2", stateCompleted)
}
