package main

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Routes of the fake Elasticsearch for restoring backup 12 (whose recordings are a real
// restore of its two parts).
const (
	getBackup12   = "GET /_snapshot/test-repo/camunda_optimize_12_*"
	getCurrent    = "GET /_snapshot/test-repo/_current"
	restorePart1  = "POST /_snapshot/test-repo/camunda_optimize_12_3.9.0_part_1_of_2/_restore"
	restorePart2  = "POST /_snapshot/test-repo/camunda_optimize_12_3.9.0_part_2_of_2/_restore"
	recoverPart1  = "GET /optimize-import-index_v3/_recovery"
	recoverPart2  = "GET /optimize-metadata_v3/_recovery"
	optimizeAlive = "GET /optimize/api/readyz"
)

// TestRestoreChecks checks the precondition answers: a dry run that would pass, a dry run
// and a real request where every check fails (409 listing all, nothing sent that changes
// anything), and the admin token.
func TestRestoreChecks(t *testing.T) {
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	allFail := func(c *config) {
		c.OptimizeVersion = "3.10.0"
		c.OptimizeHealthURL = c.ESURLs[0] + "/optimize/api/readyz"
	}
	allFailRoutes := map[string]string{getBackup1: "get-partial", resolveIdx: "resolve", getCurrent: "current-running", optimizeAlive: "cluster-health"}
	cases := []apiCase{
		{name: "restore-dry-run-ok", method: "POST", path: "/actuator/backups/12/restore", body: `{"dryRun": true}`, header: admin, status: 200,
			es: map[string]string{getBackup12: "get-completed-12", resolveIdx: "resolve-empty", getCurrent: "current-none"}, noMutES: true},
		{name: "restore-dry-run-all-fail", method: "POST", path: "/actuator/backups/1/restore", body: `{"dryRun": true}`, header: admin, status: 200,
			cfg: allFail, es: allFailRoutes, noMutES: true},
		{name: "restore-all-checks-fail", method: "POST", path: "/actuator/backups/1/restore", header: admin, status: 409,
			cfg: allFail, es: allFailRoutes, noMutES: true},
		{name: "restore-indices-exist", method: "POST", path: "/actuator/backup/12/restore", body: `{"replaceExisting": false}`, header: admin, status: 409,
			es: map[string]string{getBackup12: "get-completed-12", resolveIdx: "resolve", getCurrent: "current-none"}, noMutES: true},
		{name: "restore-unknown-backup", method: "POST", path: "/actuator/backups/1/restore", header: admin, status: 404,
			es: map[string]string{getBackup1: "get-unknown"}},
		{name: "restore-bad-body", method: "POST", path: "/actuator/backups/12/restore", body: `{"dryRun": true, "force": true}`, header: admin, status: 400},
		{name: "restore-no-token", method: "POST", path: "/actuator/backups/12/restore", status: 401},
		{name: "restore-admin-disabled", method: "POST", path: "/actuator/backups/12/restore", header: admin, status: 403,
			cfg: func(c *config) { c.AdminToken = "" }},

		// Status from Elasticsearch, when this process did not run the job (e.g. restarted).
		{name: "restore-status-completed", method: "GET", path: "/actuator/backups/12/restore", status: 200,
			es: map[string]string{getBackup12: "get-completed-12", recoverPart1: "recovery-done-1", recoverPart2: "recovery-done-2"}, noMutES: true,
			wantES: []string{getBackup12, recoverPart1, recoverPart2}},
		{name: "restore-status-running", method: "GET", path: "/actuator/backups/12/restore", status: 200,
			es: map[string]string{getBackup12: "get-completed-12", recoverPart1: "recovery-running", recoverPart2: "recovery-none"}, noMutES: true},
		{name: "restore-status-interrupted", method: "GET", path: "/actuator/backups/12/restore", status: 200,
			es: map[string]string{getBackup12: "get-completed-12", recoverPart1: "recovery-done-1", recoverPart2: "recovery-none"}, noMutES: true},
		{name: "restore-status-none", method: "GET", path: "/actuator/backups/12/restore", status: 404,
			es: map[string]string{getBackup12: "get-completed-12", recoverPart1: "recovery-none", recoverPart2: "recovery-none"}, noMutES: true},
	}
	runAPICases(t, cases)
}

// TestRestoreJob starts a restore of backup 12 into an empty cluster and follows the job:
// 202 PENDING, then both parts restored in order and the job COMPLETED with full progress.
func TestRestoreJob(t *testing.T) {
	fake := newFakeES(t, map[string]string{
		getBackup12: "get-completed-12", resolveIdx: "resolve-empty", getCurrent: "current-none",
		restorePart1: "restore-accepted-1", recoverPart1: "recovery-done-1",
		restorePart2: "restore-accepted-2", recoverPart2: "recovery-done-2",
	})
	srv := newTestServer(t, testConfig(fake.srv.URL))
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	res := serve(t, srv, "POST", "/actuator/backups/12/restore", "", admin)
	if res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	assertGolden(t, "restore-started", res)
	srv.restores.shutdown(context.Background()) // wait for the job

	res = serve(t, srv, "GET", "/actuator/backups/12/restore", "", nil)
	assertGolden(t, "restore-completed", res)
	want := []string{getBackup12, resolveIdx, getCurrent, getBackup12, restorePart1, recoverPart1, restorePart2, recoverPart2}
	if diff := cmp.Diff(want, fake.sent()); diff != "" {
		t.Errorf("Elasticsearch requests (-want +got):\n%s", diff)
	}
}

// TestRestoreSafetyBackupFails replaces existing indices, but the safety backup cannot be
// taken: the job fails and no index is deleted.
func TestRestoreSafetyBackupFails(t *testing.T) {
	safety := "GET /_snapshot/test-repo/camunda_optimize_safety-20270101t000000z_*"
	fake := newFakeES(t, map[string]string{
		getBackup12: "get-completed-12", resolveIdx: "resolve", getCurrent: "current-none",
		safety: "get-unknown", readMetadata: "metadata",
		"PUT /_snapshot/test-repo/camunda_optimize_safety-20270101t000000z_3.9.0_part_1_of_2": "create-missing-repo",
	})
	srv := newTestServer(t, testConfig(fake.srv.URL))
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	res := serve(t, srv, "POST", "/actuator/backups/12/restore", `{"replaceExisting": true}`, admin)
	if res.Code != 202 {
		t.Fatalf("got %d %s; want 202", res.Code, res.Body)
	}
	srv.restores.shutdown(context.Background())
	res = serve(t, srv, "GET", "/actuator/backups/12/restore", "", nil)
	assertGolden(t, "restore-safety-failed", res)
	for _, r := range fake.mutations() {
		if r[:6] == "DELETE" || r[:4] == "POST" {
			t.Errorf("got %s after a failed safety backup; want nothing deleted or restored", r)
		}
	}
}
