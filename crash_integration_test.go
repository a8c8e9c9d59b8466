package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// ownES is an Elasticsearch of a test's own (not the shared node of testenv/with-es.sh), which
// the test may crash; it is stopped and removed when the test ends.
type ownES struct {
	realES
	env []string // ES_* variables of testenv's scripts for this node
}

// startOwnES starts nodes Elasticsearch nodes on port (es-start.sh) with docs documents of
// test data (load-data.sh), of the run's database: es-start.sh reads DB from the environment
// with-es.sh was given (OpenSearch with DB=opensearch, as testDB says).
func startOwnES(t *testing.T, port string, nodes, docs int) ownES {
	shared := needES(t) // only where the test environment runs
	runDir := filepath.Join(filepath.Dir(shared.runDir), port)
	es := ownES{realES: realES{t: t, runDir: runDir}, env: append(os.Environ(), fmt.Sprintf("ES_NODES=%d", nodes), "ES_HTTP_PORT="+port, "ES_RUN_DIR="+runDir)}
	es.script("es-stop.sh") // one left over from an interrupted run
	t.Cleanup(func() { es.script("es-stop.sh") })
	es.url = es.script("es-start.sh")
	load := exec.Command("testenv/load-data.sh", es.url)
	load.Env = append(es.env, fmt.Sprintf("DOCS=%d", docs))
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("load-data: %v %s", err, out)
	}
	return es
}

// script runs one of testenv's scripts for this node and returns what it printed.
func (es ownES) script(name string) string {
	es.t.Helper()
	cmd := exec.Command("testenv/" + name)
	cmd.Env = es.env
	out, err := cmd.Output()
	if err != nil {
		es.t.Fatalf("%s: %v %s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// crash kills every node (SIGKILL, as the kernel's OOM killer does) and starts them again on the
// same data, without waiting for the indices to recover (es-crash.sh).
func (es ownES) crash() {
	es.t.Helper()
	began := time.Now()
	es.script("es-crash.sh")
	// The sidecar's own index recovers from the node's store (it was not being restored); the
	// test reads the job through it.
	es.must("GET", "/_cluster/health/camunda-optimize-backup-jobs?wait_for_status=yellow&timeout=60s", "")
	es.t.Logf("Elasticsearch crashed and answers again after %v", time.Since(began).Round(time.Second))
}

// crashRepo registers the repository "crash" with restores throttled to restoreRate and
// snapshots to snapshotRate ("1gb": as good as not at all), so that the test can crash the node
// while shards recover.
func (es ownES) crashRepo(restoreRate, snapshotRate string) {
	es.t.Helper()
	es.must("PUT", "/_snapshot/crash", fmt.Sprintf(`{"type":"fs","settings":{"location":%q,"max_restore_bytes_per_sec":%q,"max_snapshot_bytes_per_sec":%q}}`,
		filepath.Join(es.runDir, "repo", "crash"), restoreRate, snapshotRate))
}

// waitStep waits until the restore job of the backup is at step and a shard recovers.
func (s sidecar) waitStep(es ownES, id, step string) {
	s.t.Helper()
	s.waitJob(id, "at step "+step, func(j restoreJob) bool { return j.Step == step })
	es.waitRecovering()
}

// waitRecovering waits until some shard recovers from a snapshot (and has begun copying bytes).
func (es ownES) waitRecovering() {
	es.t.Helper()
	for i := 0; i < 300; i++ {
		if _, b := es.do("GET", "/_cat/recovery?active_only=true&h=type,bytes_recovered", ""); strings.Contains(string(b), "snapshot") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	es.t.Fatal("no shard recovered from a snapshot within 15 s")
}

// TestIntegrationCrashMidRestore crashes Elasticsearch (SIGKILL, then started again on the same
// data) while a restore's shards recover from a throttled repository, as a node that runs out
// of memory in a large restore would. Shards cut off mid-recovery come back red and never
// recover by themselves:
//   - during part 1: the job deletes and restores again the indices it created, and ends
//     COMPLETED with every document, the other installation untouched;
//   - during part 2, with repairs turned off: the job ends FAILED, naming the index,
//     Elasticsearch's reason and the safety backup, having deleted only its failed index; a
//     restore with repairs then completes;
//   - a job stuck in its safety backup is ended by DELETE .../restore: 409 while it progresses,
//     then with ?force=true FAILED, its write block lifted, nothing deleted;
//   - during a drill: the drill ends FAILED with the reason, its temporary indices deleted, the
//     live indices unchanged.
func TestIntegrationCrashMidRestore(t *testing.T) {
	es := startOwnES(t, "9285", 1, 10000)
	es.crashRepo("1gb", "1gb")
	env := es.sidecarEnv("crash")
	env["OPTIMIZE_BACKUP_ELASTICSEARCH_TIMEOUT"] = "2s"
	// One node: a primary with no copy after the crash has none to wait for (CI's time).
	env["OPTIMIZE_BACKUP_RESTORE_NO_COPY_WAIT"] = "10s"
	sc := startSidecar(t, env)
	sc.backupNow("1")
	before, others := es.installationPrint(), es.othersPrint()
	checkUnchanged := func(what string) {
		t.Helper()
		if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
			t.Errorf("%s: the installation differs from the backup (-backup +now):\n%s", what, diff)
		}
		if diff := cmp.Diff(others, es.othersPrint()); diff != "" {
			t.Errorf("%s: the other indices changed (-before +now):\n%s", what, diff)
		}
	}
	restore := func(s sidecar) {
		t.Helper()
		if status, b := s.call("POST", "/actuator/backups/1/restore", `{"replaceExisting": true}`); status != 202 {
			t.Fatalf("restore: got %d %s; want 202", status, b)
		}
	}

	es.crashRepo("10kb", "1gb")
	restore(sc)
	sc.waitStep(es, "1", restorePartStep(1))
	es.crash()
	es.crashRepo("1gb", "1gb")
	job := sc.waitJob("1", "COMPLETED", func(j restoreJob) bool { return j.State == restoreCompleted })
	if len(job.Repairs) == 0 {
		t.Errorf("crash during part 1: got no repair (%+v); want the indices cut off mid-recovery restored again", job)
	}
	checkUnchanged("crash during part 1")

	sc.stop()
	noRepairs := maps.Clone(env)
	noRepairs["OPTIMIZE_BACKUP_RESTORE_REPAIRS"] = "0"
	sc = startSidecar(t, noRepairs)
	es.crashRepo("40kb", "1gb")
	restore(sc)
	sc.waitStep(es, "1", restorePartStep(2))
	crashed := time.Now()
	es.crash()
	es.crashRepo("1gb", "1gb")
	job = sc.waitJob("1", "FAILED", func(j restoreJob) bool { return j.State == restoreFailed })
	reason := derefString(job.FailureReason)
	for _, want := range []string{"cannot be recovered by Elasticsearch", "OPTIMIZE_BACKUP_RESTORE_REPAIRS=0", "safety backup [" + derefString(job.SafetyBackupID) + "]", "/restore {\"replaceExisting\": true}"} {
		if !strings.Contains(reason, want) {
			t.Errorf("crash during part 2, repairs off: got reason %q; want it to say %q", reason, want)
		}
	}
	t.Logf("crash during part 2, repairs off: FAILED %v after the crash: %s", time.Since(crashed).Round(time.Second), reason)
	sc.stop()
	sc = startSidecar(t, env)
	restore(sc)
	sc.waitJob("1", "COMPLETED", func(j restoreJob) bool { return j.State == restoreCompleted })
	checkUnchanged("a restore after the failed one")

	es.crashRepo("1gb", "1kb")
	restore(sc)
	sc.waitJob("1", "in its safety backup", func(j restoreJob) bool { return j.Step == stepSafety && j.WaitingFor != nil })
	if status, b := sc.call("DELETE", "/actuator/backups/1/restore", ""); status != 409 || !strings.Contains(string(b), "force=true") {
		t.Errorf("DELETE .../restore of a job that progresses: got %d %s; want 409 naming ?force=true", status, b)
	}
	status, b := sc.call("DELETE", "/actuator/backups/1/restore?force=true", "")
	if err := json.Unmarshal(b, &job); status != 200 || err != nil || job.State != restoreFailed || !strings.Contains(derefString(job.FailureReason), "ended by an operator") {
		t.Errorf("DELETE .../restore?force=true: got %d %s; want 200, FAILED ended by an operator", status, b)
	}
	time.Sleep(3 * time.Second) // the owner's next write finds the job ended
	if job = sc.job("1"); job.State != restoreFailed || job.Step != stepSafety {
		t.Errorf("after the DELETE: got %s at step %s; want FAILED at %s, the owner stopped", job.State, job.Step, stepSafety)
	}
	es.must("DELETE", "/_snapshot/crash/camunda_optimize_"+derefString(job.SafetyBackupID)+"_*", "") // the safety snapshot still running
	es.crashRepo("1gb", "1gb")
	checkUnchanged("a restore ended by an operator") // othersPrint also fails on any write block left

	es.crashRepo("10kb", "1gb")
	if status, b := sc.call("POST", "/actuator/backups/1/verify", ""); status != 202 {
		t.Fatalf("verify: got %d %s; want 202", status, b)
	}
	es.waitRecovering()
	es.crash()
	es.crashRepo("1gb", "1gb")
	drill := sc.waitDrill("1")
	if drill.State != drillFailed || !strings.Contains(derefString(drill.FailureReason), "cannot be recovered by Elasticsearch") {
		t.Errorf("crash during a drill: got %s %q; want FAILED naming the index Elasticsearch cannot recover", drill.State, derefString(drill.FailureReason))
	}
	es.assertDrillLeftNothing(t, before)
	checkUnchanged("a drill that crashed")
}
