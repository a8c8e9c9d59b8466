package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Routes of the fake Elasticsearch for restoring backup 12 (whose recordings are a real
// restore of its two parts).
const (
	getBackup12  = "GET /_snapshot/test-repo/camunda_optimize_12_*"
	getCurrent   = "GET /_snapshot/test-repo/_current"
	restorePart1 = "POST /_snapshot/test-repo/camunda_optimize_12_3.9.0_part_1_of_2/_restore"
	restorePart2 = "POST /_snapshot/test-repo/camunda_optimize_12_3.9.0_part_2_of_2/_restore"
	recoverPart1 = "GET /optimize-import-index_v3/_recovery"
	recoverPart2 = "GET /optimize-metadata_v3/_recovery"
	existPart1   = "GET /_resolve/index/optimize-import-index_v3"
	existPart2   = "GET /_resolve/index/optimize-metadata_v3"
	uuidPart1    = "GET /optimize-import-index_v3/_settings/index.uuid,index.blocks.write,index.creation_date"
	uuidPart2    = "GET /optimize-metadata_v3/_settings/index.uuid,index.blocks.write,index.creation_date"
	shardsPart1  = "GET /_cluster/state/metadata,routing_table,customs/optimize-import-index_v3"
	shardsPart2  = "GET /_cluster/state/metadata,routing_table,customs/optimize-metadata_v3"
	createJobs   = "PUT /camunda-optimize-backup-jobs"
	putJob       = "PUT /camunda-optimize-backup-jobs/_doc/restore-optimize"
)

// optimizeIndices are the indices of the installation with prefix optimize (load-data.sh), as
// resolve-installations and settings-installation show them, in the order a replace-restore
// plans them: part 1's import indices first, then the others.
var optimizeIndices = []string{"optimize-import-index_v3", "optimize-position-based-import-index_v2", "optimize-timestamp-based-import-index_v4",
	"optimize-collection_v5", "optimize-dashboard_v8", "optimize-external-process-variable_v2-000001", "optimize-metadata_v3", "optimize-process-definition_v6",
	"optimize-process-instance-invoice_v8", "optimize-process-instance-order-fulfilment_v8", "optimize-process-instance-shipping_v8", "optimize-single-process-report_v10"}

// safetyID is the ID of the safety backup a restore takes at testNow.
const safetyID = "safety-20270101t000000000z"

// TestRestoreChecks checks the precondition answers: a dry run that would pass, a dry run
// and a real request where every check fails (409 listing all, nothing sent that changes
// anything), a backup that holds another installation's indices, a backup whose part 2 never
// came (INCOMPLETE), the admin token, and the status of the job stored in Elasticsearch.
func TestRestoreChecks(t *testing.T) {
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	optimize := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"status":"UP"}`) }))
	t.Cleanup(optimize.Close)
	allFail := func(c *config) {
		c.OptimizeVersion = "3.10.0"
		c.OptimizeHealthURL = optimize.URL + "/optimize/api/readyz" // Optimize runs
	}
	allFailRoutes := map[string]string{getBackup("4"): "get-partial", resolveIdx: "resolve-installations", getJob: "job-found-running", getMarks: "job-none", getDrill: "job-none"}
	var running jobDoc
	if err := json.Unmarshal(loadRecording(t, "job-found-running").Body, &struct {
		Source *jobDoc `json:"_source"`
	}{&running}); err != nil {
		t.Fatal(err)
	}
	fresh := time.UnixMilli(running.Heartbeat).Add(time.Second) // the job's owner wrote a moment ago
	cases := []apiCase{
		{name: "restore-dry-run-ok", method: "POST", path: "/actuator/backups/12/restore", body: `{"dryRun": true}`, header: admin, status: 200,
			es: map[string]string{getBackup12: "get-completed-12", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-none"}, noMutES: true},
		{name: "restore-dry-run-all-fail", method: "POST", path: "/actuator/backups/4/restore", body: `{"dryRun": true}`, header: admin, status: 200,
			cfg: allFail, es: allFailRoutes, noMutES: true},
		{name: "restore-all-checks-fail", method: "POST", path: "/actuator/backups/4/restore", header: admin, status: 409,
			cfg: allFail, es: allFailRoutes, noMutES: true},
		{name: "restore-indices-exist", method: "POST", path: "/actuator/backup/12/restore", body: `{"replaceExisting": false}`, header: admin, status: 409,
			es: map[string]string{getBackup12: "get-completed-12", resolveIdx: "resolve-installations", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-none"}, noMutES: true},
		{name: "restore-other-installation", method: "POST", path: "/actuator/backups/13/restore", body: `{"replaceExisting": true}`, header: admin, status: 409,
			es: map[string]string{getBackup("13"): "get-two-installations-13", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-none"}, noMutES: true},
		{name: "restore-dry-run-snapshot-running", method: "POST", path: "/actuator/backups/12/restore", body: `{"dryRun": true}`, header: admin, status: 200,
			es: map[string]string{getBackup12: "get-completed-12", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-running"}, noMutES: true},
		{name: "restore-raced-by-replica", method: "POST", path: "/actuator/backups/12/restore", header: admin, status: 409,
			es: map[string]string{getBackup12: "get-completed-12", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-none",
				createJobs: "jobs-index-exists", putJob: "job-create-conflict"}, esRefused: true},
		{name: "restore-backup-being-deleted", method: "POST", path: "/actuator/backups/12/restore", body: `{"dryRun": true}`, header: admin, status: 200,
			es: map[string]string{getBackup12: "get-completed-12", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "marks-backup-12", getDrill: "job-none"}, noMutES: true},
		{name: "restore-deleted-while-checked", method: "POST", path: "/actuator/backups/12/restore", header: admin, status: 409, esRefused: true,
			es: map[string]string{getBackup12: "get-completed-12", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "job-none|marks-backup-12", getDrill: "job-none",
				getCurrent: "current-none", createJobs: "jobs-index-created", putJob: "job-created|job-updated"}},
		{name: "restore-incomplete", method: "POST", path: "/actuator/backups/2/restore", header: admin, status: 409,
			es: map[string]string{getBackup("2"): "get-part1-only", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-none"}, noMutES: true},
		{name: "restore-unknown-backup", method: "POST", path: "/actuator/backups/1/restore", header: admin, status: 404,
			es: map[string]string{getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getBackup1: "get-unknown"}},
		{name: "restore-bad-body", method: "POST", path: "/actuator/backups/12/restore", body: `{"dryRun": true, "force": true}`, header: admin, status: 400},
		{name: "restore-no-token", method: "POST", path: "/actuator/backups/12/restore", status: 401},
		{name: "restore-admin-disabled", method: "POST", path: "/actuator/backups/12/restore", header: admin, status: 403,
			cfg: func(c *config) { c.AdminToken = "" }},

		// Status: the job stored in Elasticsearch, one request.
		{name: "restore-status-running", method: "GET", path: "/actuator/backups/12/restore", status: 200, now: fresh,
			es: map[string]string{getJob: "job-found-running", getMarks: "job-none", getDrill: "job-none"}, wantES: []string{getJob}},
		{name: "restore-status-completed", method: "GET", path: "/actuator/backups/12/restore", status: 200,
			es: map[string]string{getJob: "job-found-completed", getMarks: "job-none", getDrill: "job-none"}, wantES: []string{getJob}},
		{name: "restore-status-other-backup", method: "GET", path: "/actuator/backups/1/restore", status: 404,
			es: map[string]string{getJob: "job-found-completed", getMarks: "job-none", getDrill: "job-none"}},
		{name: "restore-status-none", method: "GET", path: "/actuator/backups/12/restore", status: 404,
			es: map[string]string{getJob: "job-none", getMarks: "job-none", getDrill: "job-none"}},
	}
	runAPICases(t, cases)
}

// What a restore of backup 12 asks of Elasticsearch beyond its checks (the routes of its
// requests), and the parts it restores.
var (
	jobPath       = strings.TrimPrefix(getJob, "GET ")
	allOptimize   = strings.Join(optimizeIndices, ",")
	readAllUUIDs  = "GET /" + allOptimize + "/_settings/index.uuid,index.blocks.write,index.creation_date"
	blockAll      = "PUT /" + allOptimize + "/_settings"
	deleteAll     = "DELETE /" + allOptimize
	safetyPart1   = "/_snapshot/test-repo/" + snapshotName(safetyID, "3.9.0", 1)
	safetyPart2   = "/_snapshot/test-repo/" + snapshotName(safetyID, "3.9.0", 2)
	restoreParts  = []snapshotOf{{"camunda_optimize_12_3.9.0_part_1_of_2", []string{"optimize-import-index_v3"}}, {"camunda_optimize_12_3.9.0_part_2_of_2", []string{"optimize-metadata_v3"}}}
	bothPartsDone = map[string]string{
		existPart1: "indices-exist-none", restorePart1: "restore-accepted-1", uuidPart1: "settings-restoring-1", recoverPart1: "recovery-running|recovery-done-1",
		shardsPart1: "shards-restoring-1", shardsPart2: "shards-restoring-2",
		existPart2: "indices-exist-none", restorePart2: "restore-accepted-2", uuidPart2: "settings-restoring-2", recoverPart2: "recovery-none|recovery-done-2",
	}
)

// startRoutes are the routes of the checks and the start of a restore of backup 12 (as
// Elasticsearch answers when nothing else runs), with more.
func startRoutes(resolve string, more ...map[string]string) map[string]string {
	start := map[string]string{getBackup12: "get-completed-12", resolveIdx: resolve, getJob: "job-none", getMarks: "job-none", getDrill: "job-none",
		getCurrent: "current-none", createJobs: "jobs-index-created", putJob: "job-created|job-updated"}
	return routesOf(append([]map[string]string{start}, more...)...)
}

// routesOf is the routes of all of sets (a later set's route wins).
func routesOf(sets ...map[string]string) map[string]string {
	routes := map[string]string{}
	for _, m := range sets {
		maps.Copy(routes, m)
	}
	return routes
}

// TestRestoreJob starts a restore of backup 12 into an empty cluster and follows the job: 202
// PENDING, then, as GET .../restore reports it, COMPLETED with every shard and byte of both
// parts; nothing deleted, no write block set, and both parts restored, in order, by their
// exact snapshot names and indices, without the write block a snapshot may hold. (The lock is
// an atomic create: the fake answers the first job write with job-created only if it has
// op_type=create.)
func TestRestoreJob(t *testing.T) {
	fake := newFakeES(t, startRoutes("resolve-empty", bothPartsDone))
	fake.keepDocument(jobPath, "job-found-completed")
	srv := newTestServer(t, testConfig(fake.srv.URL))
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	res := serve(t, srv, "POST", "/actuator/backups/12/restore", "", admin)
	if res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	assertGolden(t, "restore-started", res)
	srv.restores.shutdown(context.Background()) // wait for the job

	checkCompleted(t, restoreStatus(t, srv, "12"), nil)
	if diff := cmp.Diff(restoreOutcome{Restored: restoreParts}, restoreOutcomeOf(t, fake)); diff != "" {
		t.Errorf("what the restore did (-want +got):\n%s", diff)
	}
	for _, b := range fake.bodiesOf(restorePart1) {
		if !strings.Contains(b, `"ignore_index_settings":["index.blocks.write"]`) {
			t.Errorf("got restore body %s; want it to drop a write block the snapshot holds", b)
		}
	}
}

// TestRestoreReplace restores backup 12 over the installation's existing indices, all the way:
// COMPLETED; a safety backup of exactly the installation's indices (import indices in part 1,
// the others in part 2); exactly those indices deleted, and the backup's two parts restored.
// It checks the order that keeps data safe: the write block is on before the safety backup
// starts, the backup is read again after the safety backup and before the first delete, and
// an index is deleted before it is restored.
func TestRestoreReplace(t *testing.T) {
	fake := newFakeES(t, startRoutes("resolve-installations|resolve-empty", bothPartsDone, map[string]string{
		readAllUUIDs: "settings-installation", blockAll: "write-block-set", readMetadata: "metadata",
		"PUT " + safetyPart1: "create-accepted", "GET " + safetyPart1: "safety-part-1-done",
		"PUT " + safetyPart2: "create-accepted", "GET " + safetyPart2: "safety-part-2-done",
		deleteAll: "delete-indices-batch",
	}))
	fake.keepDocument(jobPath, "job-found-completed")
	srv := newTestServer(t, testConfig(fake.srv.URL))
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	if res := serve(t, srv, "POST", "/actuator/backups/12/restore", `{"replaceExisting": true}`, admin); res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	srv.restores.shutdown(context.Background())

	checkCompleted(t, restoreStatus(t, srv, "12"), ptr(safetyID))
	want := restoreOutcome{
		WriteBlocked: optimizeIndices,
		SafetyParts:  []snapshotOf{{snapshotName(safetyID, "3.9.0", 1), optimizeIndices[:3]}, {snapshotName(safetyID, "3.9.0", 2), optimizeIndices[3:]}},
		Deleted:      optimizeIndices,
		Restored:     restoreParts,
	}
	if diff := cmp.Diff(want, restoreOutcomeOf(t, fake)); diff != "" {
		t.Errorf("what the restore did (-want +got):\n%s", diff)
	}
	log := fake.received()
	checkWriteBlockBeforeSafetyBackup(t, log)
	checkConfirmedBeforeDelete(t, log, getBackup12)
	checkDeletedBeforeRestored(t, log)
}

// repairRoutes restore backup 12 into an empty cluster, but part 2's index comes back from
// its restore unable to recover (shards-failed: a primary unassigned after a failed recovery,
// as a node that crashed mid-restore leaves it), until it is restored again.
func repairRoutes() map[string]string {
	return startRoutes("resolve-empty", bothPartsDone, map[string]string{
		uuidPart2: "settings-failed|settings-failed|settings-restoring-2", recoverPart2: "recovery-none|recovery-done-2", shardsPart2: "shards-failed|shards-restoring-2",
		"DELETE /optimize-metadata_v3": "delete-indices-batch",
	})
}

// TestRestoreRepairsAFailedIndex: an index the restore created that Elasticsearch cannot
// recover is deleted (it is still the index the job created: same UUID) and restored again
// from the same snapshot; the job ends COMPLETED and reports the repair.
func TestRestoreRepairsAFailedIndex(t *testing.T) {
	fake := newFakeES(t, repairRoutes())
	fake.keepDocument(jobPath, "job-found-completed")
	srv := newTestServer(t, testConfig(fake.srv.URL))
	if res := serve(t, srv, "POST", "/actuator/backups/12/restore", "", map[string]string{"Authorization": "Bearer test-admin-token"}); res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	srv.restores.shutdown(context.Background())

	job := restoreStatus(t, srv, "12")
	checkCompleted(t, job, nil)
	if want := map[string]int{"optimize-metadata_v3": 1}; !maps.Equal(job.Repairs, want) {
		t.Errorf("got repairs %v; want %v", job.Repairs, want)
	}
	want := restoreOutcome{Deleted: []string{"optimize-metadata_v3"}, Restored: append(slices.Clone(restoreParts), restoreParts[1])}
	if diff := cmp.Diff(want, restoreOutcomeOf(t, fake)); diff != "" {
		t.Errorf("what the restore did (-want +got):\n%s", diff)
	}
}

// TestRestoreRepairsOff: with OPTIMIZE_BACKUP_RESTORE_REPAIRS=0 the same restore ends FAILED at
// once, naming the index, Elasticsearch's reason and what to do; only the failed index, the
// job's own, is deleted, and nothing is restored again.
func TestRestoreRepairsOff(t *testing.T) {
	fake := newFakeES(t, repairRoutes())
	fake.keepDocument(jobPath, "job-found-completed")
	cfg := testConfig(fake.srv.URL)
	cfg.RestoreRepairs = 0
	srv := newTestServer(t, cfg)
	if res := serve(t, srv, "POST", "/actuator/backups/12/restore", "", map[string]string{"Authorization": "Bearer test-admin-token"}); res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	srv.restores.shutdown(context.Background())

	job := restoreStatus(t, srv, "12")
	reason := derefString(job.FailureReason)
	for _, want := range []string{"optimize-metadata_v3", "ALLOCATION_FAILED", "CorruptIndexException", "OPTIMIZE_BACKUP_RESTORE_REPAIRS", `POST .../12/restore {"replaceExisting": true}`} {
		if job.State != restoreFailed || !strings.Contains(reason, want) {
			t.Errorf("got %s with reason %q; want FAILED, the reason naming %q", job.State, reason, want)
		}
	}
	want := restoreOutcome{Deleted: []string{"optimize-metadata_v3"}, Restored: restoreParts}
	if diff := cmp.Diff(want, restoreOutcomeOf(t, fake)); diff != "" {
		t.Errorf("what the restore did (-want +got):\n%s", diff)
	}
}

// TestRestoreSafetyBackupFails replaces existing indices, but the safety backup cannot be
// taken: the job, as GET .../restore reports it, FAILED saying nothing was deleted; the write
// block was set on exactly this installation's indices before the safety backup was tried, and
// lifted again; no index was deleted or restored.
func TestRestoreSafetyBackupFails(t *testing.T) {
	fake := newFakeES(t, startRoutes("resolve-installations", map[string]string{
		readAllUUIDs: "settings-installation", blockAll: "write-block-set|write-block-lifted", readMetadata: "metadata",
		"PUT " + safetyPart1: "create-missing-repo",
	}))
	fake.keepDocument(jobPath, "job-found-completed")
	srv := newTestServer(t, testConfig(fake.srv.URL))
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	res := serve(t, srv, "POST", "/actuator/backups/12/restore", `{"replaceExisting": true}`, admin)
	if res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	srv.restores.shutdown(context.Background())

	job := restoreStatus(t, srv, "12")
	if job.State != restoreFailed || job.Step != stepSafety || job.FailureReason == nil || !strings.Contains(*job.FailureReason, "nothing was deleted") {
		t.Errorf("got job %s at step %s (%v); want FAILED at %s, saying nothing was deleted", job.State, job.Step, derefString(job.FailureReason), stepSafety)
	}
	want := restoreOutcome{WriteBlocked: optimizeIndices, Unblocked: optimizeIndices} // the safety backup was refused
	if diff := cmp.Diff(want, restoreOutcomeOf(t, fake)); diff != "" {
		t.Errorf("what the restore did (-want +got):\n%s", diff)
	}
	checkWriteBlockBeforeSafetyBackup(t, fake.received())
	var stored jobDoc
	if err := json.Unmarshal(fake.document(jobPath), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.WriteBlocked {
		t.Errorf("got stored job with writeBlocked; want it cleared once the block is lifted")
	}
}

// TestRestoreProgress checks the progress rules on hand-made recovery answers: only primaries
// recovered from exactly this snapshot count, and the part is done when all its shards are.
func TestRestoreProgress(t *testing.T) {
	part := planPart{Snapshot: "snap-a", Indices: []string{"ix-1", "ix-2"}, Shards: 2}
	shard := func(stage, source string, primary bool, recovered int64) recoveryShard {
		sh := recoveryShard{Type: "SNAPSHOT", Stage: stage, Primary: primary}
		sh.Source.Snapshot = source
		sh.Index.Size.Total, sh.Index.Size.Recovered = 100, recovered
		return sh
	}
	peer := func(stage string) recoveryShard {
		sh := recoveryShard{Type: "PEER", Stage: stage, Primary: true}
		sh.Index.Size.Total, sh.Index.Size.Recovered = 100, 100
		return sh
	}
	rec := func(a, b []recoveryShard) recoveryShards {
		out := recoveryShards{}
		if a != nil {
			out["ix-1"] = struct {
				Shards []recoveryShard `json:"shards"`
			}{a}
		}
		if b != nil {
			out["ix-2"] = struct {
				Shards []recoveryShard `json:"shards"`
			}{b}
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		rec      recoveryShards
		restored map[string]string
		want     restoreProgress
	}{
		{"nothing yet", rec(nil, nil), nil, restoreProgress{SnapshotName: "snap-a", State: restoreRunning, ShardsTotal: 2}},
		{"half", rec([]recoveryShard{shard("DONE", "snap-a", true, 100)}, []recoveryShard{shard("INDEX", "snap-a", true, 40)}), nil,
			restoreProgress{SnapshotName: "snap-a", State: restoreRunning, ShardsDone: 1, ShardsTotal: 2, BytesRecovered: 140, BytesTotal: 200}},
		{"done", rec([]recoveryShard{shard("DONE", "snap-a", true, 100)}, []recoveryShard{shard("DONE", "snap-a", true, 100)}), nil,
			restoreProgress{SnapshotName: "snap-a", State: restoreCompleted, ShardsDone: 2, ShardsTotal: 2, BytesRecovered: 200, BytesTotal: 200}},
		{"replicas and other snapshots do not count", rec([]recoveryShard{shard("DONE", "snap-a", false, 100), shard("DONE", "snap-b", true, 100)}, nil), nil,
			restoreProgress{SnapshotName: "snap-a", State: restoreRunning, ShardsTotal: 2}},
		{"a primary this job restored that moved since counts when DONE", rec([]recoveryShard{shard("DONE", "snap-a", true, 100)}, []recoveryShard{peer("DONE")}),
			map[string]string{"ix-2": "uuid-2"},
			restoreProgress{SnapshotName: "snap-a", State: restoreCompleted, ShardsDone: 2, ShardsTotal: 2, BytesRecovered: 100, BytesTotal: 100}},
		{"a new, empty index of that name does not count", rec(nil, []recoveryShard{{Type: "EMPTY_STORE", Stage: "DONE", Primary: true}}),
			map[string]string{"ix-2": "uuid-2"},
			restoreProgress{SnapshotName: "snap-a", State: restoreRunning, ShardsTotal: 2}},
		{"a relocating primary (source and target) counts once", rec([]recoveryShard{shard("DONE", "snap-a", true, 100), peer("DONE")}, nil),
			map[string]string{"ix-1": "uuid-1"},
			restoreProgress{SnapshotName: "snap-a", State: restoreRunning, ShardsDone: 1, ShardsTotal: 2, BytesRecovered: 100, BytesTotal: 100}},
		{"a peer recovery of an index this job did not restore does not count", rec(nil, []recoveryShard{peer("DONE")}), map[string]string{},
			restoreProgress{SnapshotName: "snap-a", State: restoreRunning, ShardsTotal: 2}},
	} {
		if diff := cmp.Diff(tc.want, restoreProgressOf(part, tc.rec, tc.restored)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestRestoreResume takes over a job whose sidecar stopped past the point of no return, and
// finishes it: at delete-indices, exactly the planned indices (still the checked ones, by
// UUID) are deleted again, each before it is restored; at restore-part-1, an
// index already restored from the part's snapshot (by the stopped sidecar, or by its restore
// request applied late) is not restored again and nothing is deleted. Each time the job, as
// GET .../restore reports it, ends COMPLETED, owned by this sidecar.
func TestRestoreResume(t *testing.T) {
	replace := []string{"optimize-import-index_v3", "optimize-metadata_v3"}
	var facts map[string]struct {
		Settings map[string]string `json:"settings"`
	}
	if err := json.Unmarshal(loadRecording(t, "settings-installation").Body, &facts); err != nil {
		t.Fatal(err)
	}
	uuids := map[string]string{}
	for _, ix := range replace {
		uuids[ix] = facts[ix].Settings["index.uuid"]
	}
	finish := map[string]string{putJob: "job-updated", resolveIdx: "resolve-empty", uuidPart1: "settings-restoring-1", uuidPart2: "settings-restoring-2",
		shardsPart1: "shards-restoring-1", shardsPart2: "shards-restoring-2", existPart2: "indices-exist-none", restorePart2: "restore-accepted-2", recoverPart2: "recovery-done-2"}
	for _, tc := range []struct {
		name string
		step string
		es   map[string]string
		want restoreOutcome
	}{
		{"at delete-indices", stepDelete, map[string]string{
			"GET /optimize-import-index_v3,optimize-metadata_v3/_settings/index.uuid,index.blocks.write,index.creation_date": "settings-installation",
			"DELETE /optimize-import-index_v3,optimize-metadata_v3":                                                          "delete-indices-batch",
			existPart1: "indices-exist-none", restorePart1: "restore-accepted-unblocked", recoverPart1: "recovery-done-1",
		}, restoreOutcome{Deleted: replace, Restored: restoreParts}},
		{"at restore-part-1, the stopped sidecar's restore request applied late", restorePartStep(1), map[string]string{
			existPart1: "indices-exist-none|indices-exist", restorePart1: "restore-index-exists", recoverPart1: "recovery-done-1",
		}, restoreOutcome{Restored: restoreParts[1:]}},
		{"at restore-part-1, part 1 already restored", restorePartStep(1), map[string]string{
			existPart1: "indices-exist", recoverPart1: "recovery-done-1",
		}, restoreOutcome{Restored: restoreParts[1:]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeES(t, routesOf(finish, tc.es))
			fake.keepDocument(jobPath, "job-found-completed")
			srv := newTestServer(t, testConfig(fake.srv.URL))
			doc := jobDoc{
				restoreJob: restoreJob{BackupID: "12", State: restoreRunning, Step: tc.step, SafetyBackupID: ptr(safetyID), StartTime: ptr(srv.now().UTC()),
					Snapshots: []restoreProgress{{SnapshotName: "camunda_optimize_12_3.9.0_part_1_of_2", State: restorePending, ShardsTotal: 1},
						{SnapshotName: "camunda_optimize_12_3.9.0_part_2_of_2", State: restorePending, ShardsTotal: 1}}},
				Repository: "test-repo",
				Plan: restorePlan{Version: "3.9.0", Replace: replace, ReplaceUUIDs: uuids, Parts: []planPart{
					{Snapshot: "camunda_optimize_12_3.9.0_part_1_of_2", Indices: replace[:1], Shards: 1},
					{Snapshot: "camunda_optimize_12_3.9.0_part_2_of_2", Indices: replace[1:], Shards: 1}}},
			}
			if err := srv.takeOverRestore(context.Background(), doc, jobVersion{SeqNo: 1, PrimaryTerm: 1}); err != nil {
				t.Fatal(err)
			}
			srv.restores.shutdown(context.Background())

			checkCompleted(t, restoreStatus(t, srv, "12"), ptr(safetyID))
			if diff := cmp.Diff(tc.want, restoreOutcomeOf(t, fake)); diff != "" {
				t.Errorf("what the restore did (-want +got):\n%s", diff)
			}
			checkDeletedBeforeRestored(t, fake.received())
			var stored jobDoc
			if err := json.Unmarshal(fake.document(jobPath), &stored); err != nil {
				t.Fatal(err)
			}
			if stored.Owner != srv.owner {
				t.Errorf("got job owned by %q; want this sidecar (%s)", stored.Owner, srv.owner)
			}
		})
	}
}

// restoreStatus is the restore job of backup id as GET .../restore reports it.
func restoreStatus(t *testing.T, srv *server, id string) restoreJob {
	t.Helper()
	res := serve(t, srv, "GET", "/actuator/backups/"+id+"/restore", "", nil)
	if res.Code != http.StatusOK {
		t.Fatalf("GET .../%s/restore: got %d %s; want 200", id, res.Code, res.Body)
	}
	var job restoreJob
	if err := json.Unmarshal(res.Body.Bytes(), &job); err != nil {
		t.Fatal(err)
	}
	return job
}

// checkCompleted fails unless job is the COMPLETED restore of backup 12 (with this safety
// backup), ended at testNow, with every shard and byte of both parts restored.
func checkCompleted(t *testing.T, job restoreJob, safety *string) {
	t.Helper()
	if job.BackupID != "12" || job.State != restoreCompleted || job.Step != stepDone || job.FailureReason != nil || job.EndTime == nil || !job.EndTime.Equal(testNow) {
		t.Errorf("got job of backup %s %s at step %s (failure %v, ended %v); want backup 12 COMPLETED at step done, ended at %v", job.BackupID, job.State, job.Step, derefString(job.FailureReason), job.EndTime, testNow)
	}
	if !cmp.Equal(safety, job.SafetyBackupID) {
		t.Errorf("got safety backup %v; want %v", derefString(job.SafetyBackupID), derefString(safety))
	}
	var names []string
	for _, p := range job.Snapshots {
		names = append(names, p.SnapshotName)
		if p.State != restoreCompleted || p.ShardsTotal == 0 || p.ShardsDone != p.ShardsTotal || p.BytesRecovered != p.BytesTotal {
			t.Errorf("got progress %+v; want COMPLETED, every shard and byte restored", p)
		}
	}
	if want := []string{restoreParts[0].Snapshot, restoreParts[1].Snapshot}; !slices.Equal(names, want) {
		t.Errorf("got progress of snapshots %v; want %v", names, want)
	}
}

// snapshotOf is a snapshot and indices in it.
type snapshotOf struct {
	Snapshot string
	Indices  []string
}

// restoreOutcome is what a restore changed in Elasticsearch, as the fake saw it: the requests
// Elasticsearch accepted (2xx), whatever number of job writes and reads came between them.
type restoreOutcome struct {
	// WriteBlocked and Unblocked are the indices a write block was set on, and lifted from.
	WriteBlocked, Unblocked []string
	// SafetyParts are the snapshots of the safety backup started, with their indices.
	SafetyParts []snapshotOf
	// Deleted are the indices deleted.
	Deleted []string
	// Restored are the snapshots restored, with the indices restored from each, in order.
	Restored []snapshotOf
}

// restoreOutcomeOf is what the requests the fake accepted changed.
func restoreOutcomeOf(t *testing.T, fake *fakeES) restoreOutcome {
	t.Helper()
	var out restoreOutcome
	for _, r := range fake.received() {
		if r.status/100 != 2 {
			continue
		}
		method, path, _ := strings.Cut(r.key, " ")
		switch {
		case method == "PUT" && strings.HasSuffix(path, "/_settings"):
			names := indicesIn(strings.TrimSuffix(path, "/_settings"))
			if strings.Contains(r.body, `"index.blocks.write":true`) {
				out.WriteBlocked = append(out.WriteBlocked, names...)
			} else {
				out.Unblocked = append(out.Unblocked, names...)
			}
		case method == "PUT" && strings.HasPrefix(path, "/_snapshot/test-repo/camunda_optimize_"+safetyID):
			out.SafetyParts = append(out.SafetyParts, snapshotOf{strings.TrimPrefix(path, "/_snapshot/test-repo/"), bodyIndices(t, r.body)})
		case method == "DELETE" && !strings.HasPrefix(path, "/_snapshot/"):
			out.Deleted = append(out.Deleted, indicesIn(path)...)
		case method == "POST" && strings.HasSuffix(path, "/_restore"):
			snapshot := strings.TrimSuffix(strings.TrimPrefix(path, "/_snapshot/test-repo/"), "/_restore")
			out.Restored = append(out.Restored, snapshotOf{snapshot, bodyIndices(t, r.body)})
		}
	}
	return out
}

// indicesIn are the indices a path of the form /a,b,c names.
func indicesIn(path string) []string { return strings.Split(strings.TrimPrefix(path, "/"), ",") }

// bodyIndices are the indices a snapshot or restore request body names.
func bodyIndices(t *testing.T, body string) []string {
	t.Helper()
	var b struct {
		Indices []string `json:"indices"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("request body %s: %v", body, err)
	}
	return b.Indices
}

// isSafetyRequest tells whether r is about the safety backup's snapshots.
func isSafetyRequest(r esRequest) bool {
	return strings.Contains(r.key, " /_snapshot/test-repo/camunda_optimize_"+safetyID)
}

// checkWriteBlockBeforeSafetyBackup fails unless every index a safety backup was asked to hold
// had its write block set before it was asked: a write after the snapshot read the index would
// be lost with the delete.
func checkWriteBlockBeforeSafetyBackup(t *testing.T, log []esRequest) {
	t.Helper()
	blocked, asked := map[string]bool{}, false
	for _, r := range log {
		method, path, _ := strings.Cut(r.key, " ")
		switch {
		case method == "PUT" && strings.HasSuffix(path, "/_settings") && strings.Contains(r.body, `"index.blocks.write":true`) && r.status/100 == 2:
			for _, ix := range indicesIn(strings.TrimSuffix(path, "/_settings")) {
				blocked[ix] = true
			}
		case method == "PUT" && isSafetyRequest(r):
			asked = true
			for _, ix := range bodyIndices(t, r.body) {
				if !blocked[ix] {
					t.Errorf("the safety backup was asked to hold %s before its write block was set; want the block first", ix)
				}
			}
		}
	}
	if !asked {
		t.Error("no safety backup was asked for; want one")
	}
}

// checkConfirmedBeforeDelete fails unless the backup was read again (readBackup) after the
// safety backup's last request and before the first index was deleted: the one fact every
// delete rests on is that the backup is still there to restore.
func checkConfirmedBeforeDelete(t *testing.T, log []esRequest, readBackup string) {
	t.Helper()
	lastSafety, confirmed := -1, -1
	for i, r := range log {
		switch {
		case isSafetyRequest(r):
			lastSafety = i
		case r.key == readBackup && lastSafety >= 0:
			confirmed = i
		case strings.HasPrefix(r.key, "DELETE /") && !strings.HasPrefix(r.key, "DELETE /_snapshot/"):
			if lastSafety < 0 || confirmed < lastSafety {
				t.Errorf("request %d deletes indices (%s) with no read of the backup (%s) between the safety backup and it; want the backup confirmed first", i, r.key, readBackup)
			}
			return
		}
	}
	t.Error("no index was deleted; want the replaced ones deleted")
}

// checkDeletedBeforeRestored fails if an index was deleted after a restore of it was asked
// for: that would delete what was just restored.
func checkDeletedBeforeRestored(t *testing.T, log []esRequest) {
	t.Helper()
	restored := map[string]bool{}
	for _, r := range log {
		method, path, _ := strings.Cut(r.key, " ")
		switch {
		case method == "POST" && strings.HasSuffix(path, "/_restore"):
			for _, ix := range bodyIndices(t, r.body) {
				restored[ix] = true
			}
		case method == "DELETE" && !strings.HasPrefix(path, "/_snapshot/"):
			for _, ix := range indicesIn(path) {
				if restored[ix] {
					t.Errorf("index %s was deleted after its restore was asked for; want it deleted first", ix)
				}
			}
		}
	}
}
