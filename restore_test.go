package main

import (
	"context"
	"encoding/json"
	"io"
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
	uuidPart1    = "GET /optimize-import-index_v3/_settings/index.uuid,index.blocks.write"
	uuidPart2    = "GET /optimize-metadata_v3/_settings/index.uuid,index.blocks.write"
	createJobs   = "PUT /camunda-optimize-backup-jobs"
	putJob       = "PUT /camunda-optimize-backup-jobs/_doc/restore-optimize"
)

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

// TestRestoreJob starts a restore of backup 12 into an empty cluster and follows the job: 202
// PENDING, the lock taken with an atomic create, both parts restored in order by their exact
// snapshot names, and the stored job COMPLETED with full progress.
func TestRestoreJob(t *testing.T) {
	fake := newFakeES(t, map[string]string{
		getBackup12: "get-completed-12", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-none",
		createJobs: "jobs-index-created", putJob: "job-created|job-updated",
		uuidPart1: "settings-installation", uuidPart2: "settings-installation",
		existPart1: "indices-exist-none", restorePart1: "restore-accepted-1", recoverPart1: "recovery-running|recovery-done-1",
		existPart2: "indices-exist-none", restorePart2: "restore-accepted-2", recoverPart2: "recovery-none|recovery-done-2",
	})
	srv := newTestServer(t, testConfig(fake.srv.URL))
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	res := serve(t, srv, "POST", "/actuator/backups/12/restore", "", admin)
	if res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	assertGolden(t, "restore-started", res)
	srv.restores.shutdown(context.Background()) // wait for the job

	want := []string{getJob, getBackup12, resolveIdx, getDrill, getMarks, getCurrent, createJobs, putJob, getDrill, getMarks,
		putJob, existPart1, restorePart1, uuidPart1, putJob, recoverPart1, putJob, recoverPart1, putJob,
		putJob, existPart2, restorePart2, uuidPart2, putJob, recoverPart2, putJob, recoverPart2, putJob, resolveIdx, putJob}
	if diff := cmp.Diff(want, fake.sent()); diff != "" {
		t.Errorf("Elasticsearch requests (-want +got):\n%s", diff)
	}
	jobs := fake.bodiesOf(putJob)
	var last jobDoc
	if err := json.Unmarshal([]byte(jobs[len(jobs)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last.State != restoreCompleted || last.Step != stepDone || last.Owner != srv.owner || last.FailureReason != nil {
		t.Errorf("got stored job %+v; want COMPLETED at step done, owned by this sidecar", last)
	}
	for _, p := range last.Snapshots {
		if p.State != restoreCompleted || p.ShardsDone != p.ShardsTotal || p.BytesRecovered != p.BytesTotal {
			t.Errorf("got progress %+v; want every shard and byte restored", p)
		}
	}
	for _, b := range fake.bodiesOf(restorePart1) {
		if !strings.Contains(b, `"indices":["optimize-import-index_v3"]`) || !strings.Contains(b, `"ignore_index_settings":["index.blocks.write"]`) {
			t.Errorf("got restore body %s; want exactly the checked index, without a write block", b)
		}
	}
}

// TestRestoreSafetyBackupFails replaces existing indices, but the safety backup cannot be
// taken: the job fails, the write block it set is lifted again, and no index is deleted or
// restored.
func TestRestoreSafetyBackupFails(t *testing.T) {
	names := "/optimize-import-index_v3,optimize-position-based-import-index_v2,optimize-timestamp-based-import-index_v4,optimize-collection_v5,optimize-dashboard_v8,optimize-external-process-variable_v2-000001,optimize-metadata_v3,optimize-process-definition_v6,optimize-process-instance-invoice_v8,optimize-process-instance-order-fulfilment_v8,optimize-process-instance-shipping_v8,optimize-single-process-report_v10"
	readSettings := "GET " + names + "/_settings/index.uuid,index.blocks.write"
	settings := "PUT /optimize-import-index_v3,optimize-position-based-import-index_v2,optimize-timestamp-based-import-index_v4,optimize-collection_v5,optimize-dashboard_v8,optimize-external-process-variable_v2-000001,optimize-metadata_v3,optimize-process-definition_v6,optimize-process-instance-invoice_v8,optimize-process-instance-order-fulfilment_v8,optimize-process-instance-shipping_v8,optimize-single-process-report_v10/_settings"
	fake := newFakeES(t, map[string]string{
		getBackup12: "get-completed-12", resolveIdx: "resolve-installations", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-none",
		createJobs: "jobs-index-created", putJob: "job-created|job-updated", settings: "write-block-set|write-block-lifted", readMetadata: "metadata", readSettings: "settings-installation",
		"PUT /_snapshot/test-repo/camunda_optimize_safety-20270101t000000000z_3.9.0_part_1_of_2": "create-missing-repo",
	})
	srv := newTestServer(t, testConfig(fake.srv.URL))
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	res := serve(t, srv, "POST", "/actuator/backups/12/restore", `{"replaceExisting": true}`, admin)
	if res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	srv.restores.shutdown(context.Background())
	blocks := fake.bodiesOf(settings)
	if diff := cmp.Diff([]string{`{"index.blocks.write":true}`, `{"index.blocks.write":null}`}, blocks); diff != "" {
		t.Errorf("write block bodies (-want +got):\n%s", diff)
	}
	for _, r := range fake.mutations() {
		if strings.HasPrefix(r, "DELETE") || strings.HasPrefix(r, "POST /_snapshot") {
			t.Errorf("got %s after a failed safety backup; want nothing deleted or restored", r)
		}
	}
	jobs := fake.bodiesOf(putJob)
	var last jobDoc
	if err := json.Unmarshal([]byte(jobs[len(jobs)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last.State != restoreFailed || last.WriteBlocked || last.FailureReason == nil || !strings.Contains(*last.FailureReason, "nothing was deleted") {
		t.Errorf("got stored job %+v; want FAILED, write block lifted, saying nothing was deleted", last)
	}
	if !slices.Contains(last.Plan.Replace, "optimize-metadata_v3") || slices.ContainsFunc(last.Plan.Replace, func(ix string) bool {
		return strings.HasPrefix(ix, "optimize-east-") || strings.HasPrefix(ix, "optimize-logs")
	}) {
		t.Errorf("got indices to replace %v; want this installation's only", last.Plan.Replace)
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
		{"a peer recovery of an index this job did not restore does not count", rec(nil, []recoveryShard{peer("DONE")}), nil,
			restoreProgress{SnapshotName: "snap-a", State: restoreRunning, ShardsTotal: 2}},
	} {
		if diff := cmp.Diff(tc.want, restoreProgressOf(part, tc.rec, tc.restored)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestRestoreResume takes over a job whose sidecar stopped after it deleted the indices it
// replaces, and finishes it: the delete is repeated only for indices that are still the
// checked ones (same UUID), an index already restored from the part's snapshot is not
// restored again, and the stored job ends COMPLETED.
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
	for _, tc := range []struct {
		name string
		step string
		es   map[string]string
		want []string
	}{
		{"at delete-indices", stepDelete, map[string]string{
			"GET /optimize-import-index_v3,optimize-metadata_v3/_settings/index.uuid,index.blocks.write": "settings-installation",
			"DELETE /optimize-import-index_v3,optimize-metadata_v3":                                      "delete-indices-batch",
			existPart1: "indices-exist-none", restorePart1: "restore-accepted-unblocked", recoverPart1: "recovery-done-1",
			existPart2: "indices-exist-none", restorePart2: "restore-accepted-2", recoverPart2: "recovery-done-2",
			putJob: "job-updated", resolveIdx: "resolve-empty", uuidPart1: "settings-installation", uuidPart2: "settings-installation",
		}, []string{putJob, "GET /optimize-import-index_v3,optimize-metadata_v3/_settings/index.uuid,index.blocks.write", "DELETE /optimize-import-index_v3,optimize-metadata_v3",
			putJob, existPart1, restorePart1, uuidPart1, putJob, recoverPart1, putJob, putJob, existPart2, restorePart2, uuidPart2, putJob, recoverPart2, putJob, resolveIdx, putJob}},
		{"at restore-part-1, the stopped sidecar's restore request applied late", restorePartStep(1), map[string]string{
			existPart1: "indices-exist-none|indices-exist", restorePart1: "restore-index-exists", recoverPart1: "recovery-done-1",
			existPart2: "indices-exist-none", restorePart2: "restore-accepted-2", recoverPart2: "recovery-done-2",
			putJob: "job-updated", resolveIdx: "resolve-empty", uuidPart1: "settings-installation", uuidPart2: "settings-installation",
		}, []string{putJob, existPart1, restorePart1, existPart1, recoverPart1, uuidPart1, recoverPart1, putJob, putJob, existPart2, restorePart2, uuidPart2, putJob, recoverPart2, putJob, resolveIdx, putJob}},
		{"at restore-part-1, part 1 already restored", restorePartStep(1), map[string]string{
			existPart1: "indices-exist", recoverPart1: "recovery-done-1",
			existPart2: "indices-exist-none", restorePart2: "restore-accepted-2", recoverPart2: "recovery-done-2",
			putJob: "job-updated", resolveIdx: "resolve-empty", uuidPart1: "settings-installation", uuidPart2: "settings-installation",
		}, []string{putJob, existPart1, recoverPart1, uuidPart1, recoverPart1, putJob, putJob, existPart2, restorePart2, uuidPart2, putJob, recoverPart2, putJob, resolveIdx, putJob}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeES(t, tc.es)
			srv := newTestServer(t, testConfig(fake.srv.URL))
			doc := jobDoc{
				restoreJob: restoreJob{BackupID: "12", State: restoreRunning, Step: tc.step, SafetyBackupID: ptr("safety-20270101t000000000z"),
					Snapshots: []restoreProgress{{SnapshotName: "camunda_optimize_12_3.9.0_part_1_of_2", State: restorePending, ShardsTotal: 1},
						{SnapshotName: "camunda_optimize_12_3.9.0_part_2_of_2", State: restorePending, ShardsTotal: 1}}},
				Repository: "test-repo",
				Plan: restorePlan{Version: "3.9.0", Replace: replace, ReplaceUUIDs: uuids, Parts: []planPart{
					{Snapshot: "camunda_optimize_12_3.9.0_part_1_of_2", Indices: replace[:1], Shards: 1},
					{Snapshot: "camunda_optimize_12_3.9.0_part_2_of_2", Indices: replace[1:], Shards: 1}}},
			}
			if err := srv.takeOver(context.Background(), doc, jobVersion{SeqNo: 1, PrimaryTerm: 1}); err != nil {
				t.Fatal(err)
			}
			srv.restores.shutdown(context.Background())
			if diff := cmp.Diff(tc.want, fake.sent()); diff != "" {
				t.Errorf("Elasticsearch requests (-want +got):\n%s", diff)
			}
			jobs := fake.bodiesOf(putJob)
			var last jobDoc
			if err := json.Unmarshal([]byte(jobs[len(jobs)-1]), &last); err != nil {
				t.Fatal(err)
			}
			if last.State != restoreCompleted || last.Owner != srv.owner {
				t.Errorf("got stored job %s at %s owned by %s; want COMPLETED, owned by this sidecar", last.State, last.Step, last.Owner)
			}
		})
	}
}
