package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/golden"
)

// Routes of the fake Elasticsearch, by what the sidecar asks.
const (
	getBackup1    = "GET /_snapshot/test-repo/camunda_optimize_1_*"
	putPart1      = "PUT /_snapshot/test-repo/camunda_optimize_1_3.9.0_part_1_of_2"
	putPart2      = "PUT /_snapshot/test-repo/camunda_optimize_1_3.9.0_part_2_of_2"
	pollPart1     = "GET /_snapshot/test-repo/camunda_optimize_1_3.9.0_part_1_of_2"
	resolveIdx    = "GET /_resolve/index/optimize-*"
	readMetadata  = "GET /optimize-metadata/_doc/1"
	listAll       = "GET /_snapshot/test-repo/camunda_optimize_*"
	deleteBoth1   = "DELETE /_snapshot/test-repo/camunda_optimize_1_3.9.0_part_1_of_2,camunda_optimize_1_3.9.0_part_2_of_2"
	getJob        = "GET /camunda-optimize-backup-jobs/_doc/restore-optimize"
	getMarks      = "GET /camunda-optimize-backup-jobs/_doc/deleting-optimize"
	getDrill      = "GET /camunda-optimize-backup-jobs/_doc/drill-optimize"
	putMarks      = "PUT /camunda-optimize-backup-jobs/_doc/deleting-optimize"
	deleteNightly = "DELETE /_snapshot/test-repo/camunda_optimize_nightly_3.9.0_part_1_of_2,camunda_optimize_nightly_3.9.0_part_2_of_2"
)

// getBackup is the route of reading the snapshots of one backup: recordings are served under
// their own backup's ID, since the sidecar keeps only the snapshots of exactly the ID asked for.
func getBackup(id string) string { return "GET /_snapshot/test-repo/camunda_optimize_" + id + "_*" }

// createRoutes is what a successful create of backup 1 asks Elasticsearch, in order.
// When the clock is past part 1's grace period, part 2 is not started, and the note saying so
// is written (noteRoutes).
func createRoutes() map[string]string {
	routes := map[string]string{
		getBackup1:   "get-unknown",
		readMetadata: "metadata",
		resolveIdx:   "resolve",
		putPart1:     "create-accepted",
		pollPart1:    "get-part1-done-1",
		putPart2:     "create-accepted",
	}
	maps.Copy(routes, noteRoutes("1"))
	return routes
}

// apiCase is one request through the real router against a fake Elasticsearch, whose answer
// is compared with testdata/golden/{name}.golden (status line, then body).
type apiCase struct {
	name   string
	method string
	path   string
	body   string
	header map[string]string
	es     map[string]string // fake Elasticsearch routes; nil: no request expected
	cfg    func(*config)
	now    time.Time
	status int
	wantES []string // when set: exactly these requests, in order
	// check, when set, checks what the requests Elasticsearch got did.
	check   func(*testing.T, *fakeES)
	noMutES bool // when set: nothing but GETs reached Elasticsearch
	// esRefused marks a 4xx that comes from Elasticsearch refusing a create: the one
	// mutating request was sent, and refused, so nothing changed.
	esRefused bool
	// wantHeader are answer headers the case checks (golden files hold status and body only).
	wantHeader map[string]string
}

// TestAPI checks every route's status and body against golden files, including every state,
// every ID rule and every error status, and that refused requests change nothing.
func TestAPI(t *testing.T) {
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	var part1Only getSnapshotsAnswer
	if err := json.Unmarshal(loadRecording(t, "get-part1-only").Body, &part1Only); err != nil {
		t.Fatal(err)
	}
	part1End := time.UnixMilli(part1Only.Snapshots[0].EndMillis)
	// Creates run while part 1 has just ended: part 2 is started only within the grace period.
	var part1Done getSnapshotsAnswer
	if err := json.Unmarshal(loadRecording(t, "get-part1-done-1").Body, &part1Done); err != nil {
		t.Fatal(err)
	}
	createNow := time.UnixMilli(part1Done.Snapshots[0].EndMillis).Add(time.Second)
	cases := []apiCase{
		// Create, both families.
		{name: "create-legacy", method: "POST", path: "/actuator/backup", body: `{"backupId": "1"}`, es: createRoutes(), status: 200, now: createNow,
			wantES: []string{getBackup1, readMetadata, resolveIdx, putPart1, pollPart1, putPart2, pollPart1}},
		{name: "create-integer", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, es: createRoutes(), status: 202, now: createNow,
			wantES: []string{getBackup1, readMetadata, resolveIdx, putPart1, pollPart1, putPart2, pollPart1}},
		{name: "create-version-configured", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, es: createRoutes(), status: 202,
			cfg:    func(c *config) { c.OptimizeVersion = "3.9.0" },
			now:    createNow,
			wantES: []string{getBackup1, resolveIdx, putPart1, pollPart1, putPart2, pollPart1}},
		{name: "create-exists", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 409,
			es: map[string]string{getBackup1: "get-completed"}, noMutES: true},
		{name: "create-name-in-use-running", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 409,
			es: map[string]string{getBackup1: "get-unknown", readMetadata: "metadata", resolveIdx: "resolve", putPart1: "create-in-use-running"}, esRefused: true},
		{name: "create-name-in-use-exists", method: "POST", path: "/actuator/backup", body: `{"backupId": "1"}`, status: 409,
			es: map[string]string{getBackup1: "get-unknown", readMetadata: "metadata", resolveIdx: "resolve", putPart1: "create-in-use-exists"}, esRefused: true},
		{name: "create-missing-repo", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 500,
			es: map[string]string{getBackup1: "get-missing-repo"}, noMutES: true},
		{name: "create-missing-repo-on-put", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 500,
			es: map[string]string{getBackup1: "get-unknown", readMetadata: "metadata", resolveIdx: "resolve", putPart1: "create-missing-repo"}},
		{name: "create-no-indices", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 500,
			es: map[string]string{getBackup1: "get-unknown", readMetadata: "metadata", resolveIdx: "resolve-empty"}, noMutES: true},
		{name: "create-no-metadata", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 500,
			es: map[string]string{getBackup1: "get-unknown", readMetadata: "metadata-missing"}, noMutES: true},
		{name: "create-no-repository-configured", method: "POST", path: "/actuator/backup", body: `{"backupId": "1"}`, status: 400,
			cfg: func(c *config) { c.Repository = "" }},

		// Bodies.
		{name: "body-malformed", method: "POST", path: "/actuator/backups", body: `{"backupId": `, status: 400},
		{name: "body-unknown-field", method: "POST", path: "/actuator/backups", body: `{"backupId": 1, "force": true}`, status: 400},
		{name: "body-empty", method: "POST", path: "/actuator/backups", body: ``, status: 400},
		{name: "body-trailing", method: "POST", path: "/actuator/backups", body: `{"backupId": 1} {"backupId": 2}`, status: 400},
		{name: "body-too-large", method: "POST", path: "/actuator/backups", body: `{"backupId": "` + strings.Repeat("a", maxBodyBytes) + `"}`, status: 413},
		{name: "body-no-id", method: "POST", path: "/actuator/backups", body: `{}`, status: 400},

		// ID rules of the 3.9 family (strings, or non-negative integers), each a 400 naming the
		// rule: Optimize 3.9's, and what Elasticsearch refuses in a snapshot name.
		{name: "id-empty", method: "POST", path: "/actuator/backup", body: `{"backupId": ""}`, status: 400},
		{name: "id-too-long", method: "POST", path: "/actuator/backup", body: `{"backupId": "` + strings.Repeat("a", maxIDChars+1) + `"}`, status: 400},
		{name: "id-too-long-for-elasticsearch", method: "POST", path: "/actuator/backup", body: `{"backupId": "` + strings.Repeat("a", maxIDChars) + `"}`, status: 400,
			es: map[string]string{getBackup(strings.Repeat("a", maxIDChars)): "ids-get-too-long"}, noMutES: true},
		{name: "id-uppercase", method: "POST", path: "/actuator/backup", body: `{"backupId": "Backup1"}`, status: 400},
		{name: "id-uppercase-non-ascii", method: "POST", path: "/actuator/backup", body: `{"backupId": "été-É"}`, status: 400},
		{name: "id-whitespace", method: "POST", path: "/actuator/backup", body: `{"backupId": "a b"}`, status: 400},
		{name: "id-control", method: "POST", path: "/actuator/backup", body: `{"backupId": "a\u0007b"}`, status: 400},
		{name: "id-line-separator", method: "POST", path: "/actuator/backup", body: `{"backupId": "a\u2028b"}`, status: 400},
		{name: "id-star", method: "POST", path: "/actuator/backup", body: `{"backupId": "a*"}`, status: 400},
		{name: "id-slash", method: "POST", path: "/actuator/backup", body: `{"backupId": "a/b"}`, status: 400},
		{name: "id-comma", method: "POST", path: "/actuator/backup", body: `{"backupId": "a,b"}`, status: 400},
		{name: "id-hash", method: "POST", path: "/actuator/backup", body: `{"backupId": "a#b"}`, status: 400},
		{name: "id-quote", method: "POST", path: "/actuator/backup", body: `{"backupId": "a\"b"}`, status: 400},
		{name: "id-angle", method: "POST", path: "/actuator/backup", body: `{"backupId": "<a>"}`, status: 400},
		{name: "id-negative-legacy", method: "POST", path: "/actuator/backup", body: `{"backupId": -1}`, status: 400},
		{name: "id-fraction-legacy", method: "POST", path: "/actuator/backup", body: `{"backupId": 1.5}`, status: 400},
		{name: "id-bool-legacy", method: "POST", path: "/actuator/backup", body: `{"backupId": true}`, status: 400},
		{name: "id-integer-legacy", method: "POST", path: "/actuator/backup", body: `{"backupId": 1}`, es: createRoutes(), status: 200, now: createNow,
			wantES: []string{getBackup1, readMetadata, resolveIdx, putPart1, pollPart1, putPart2, pollPart1}},

		// ID rules of the 3.10+ family: a non-negative JSON integer up to 2^63-1, nothing else.
		{name: "id-string-current", method: "POST", path: "/actuator/backups", body: `{"backupId": "nightly"}`, status: 400},
		{name: "id-digit-string-current", method: "POST", path: "/actuator/backups", body: `{"backupId": "5"}`, status: 400},
		{name: "id-underscore-current", method: "POST", path: "/actuator/backups", body: `{"backupId": "a_b"}`, status: 400},
		{name: "id-above-long", method: "POST", path: "/actuator/backups", body: `{"backupId": 9223372036854775808}`, status: 400},
		{name: "id-negative", method: "POST", path: "/actuator/backups", body: `{"backupId": -1}`, status: 400},
		{name: "id-fraction", method: "POST", path: "/actuator/backups", body: `{"backupId": 1.5}`, status: 400},
		{name: "id-exponent", method: "POST", path: "/actuator/backups", body: `{"backupId": 1e3}`, status: 400},
		{name: "id-bool", method: "POST", path: "/actuator/backups", body: `{"backupId": true}`, status: 400},
		{name: "id-in-path", method: "GET", path: "/actuator/backups/Backup1", status: 400},

		// IDs that are prefixes of each other never see each other's snapshots: the pattern
		// camunda_optimize_nightly_* also matches nightly_1's, and the parsed names tell them apart.
		{name: "pair-create-nightly-beside-nightly_1", method: "POST", path: "/actuator/backup", body: `{"backupId": "nightly"}`, status: 200, now: createNow,
			es: map[string]string{getBackup("nightly"): "ids-get-nightly-longer-only", readMetadata: "metadata", resolveIdx: "resolve",
				"PUT /_snapshot/test-repo/camunda_optimize_nightly_3.9.0_part_1_of_2": "create-accepted",
				"GET /_snapshot/test-repo/camunda_optimize_nightly_3.9.0_part_1_of_2": "get-part1-done-nightly",
				"PUT /_snapshot/test-repo/camunda_optimize_nightly_3.9.0_part_2_of_2": "create-accepted"},
			wantES: []string{getBackup("nightly"), readMetadata, resolveIdx, "PUT /_snapshot/test-repo/camunda_optimize_nightly_3.9.0_part_1_of_2",
				"GET /_snapshot/test-repo/camunda_optimize_nightly_3.9.0_part_1_of_2", "PUT /_snapshot/test-repo/camunda_optimize_nightly_3.9.0_part_2_of_2",
				"GET /_snapshot/test-repo/camunda_optimize_nightly_3.9.0_part_1_of_2"}},
		{name: "pair-create-nightly-exists", method: "POST", path: "/actuator/backup", body: `{"backupId": "nightly"}`, status: 409,
			es: map[string]string{getBackup("nightly"): "ids-get-nightly"}, noMutES: true},
		{name: "pair-create-1-exists", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 409,
			es: map[string]string{getBackup1: "ids-get-1"}, noMutES: true},
		{name: "pair-get-nightly", method: "GET", path: "/actuator/backup/nightly", status: 200,
			es: map[string]string{getBackup("nightly"): "ids-state-nightly"}},
		{name: "pair-get-nightly-absent", method: "GET", path: "/actuator/backup/nightly", status: 404,
			es: map[string]string{getBackup("nightly"): "ids-state-nightly-longer-only"}},
		{name: "pair-get-nightly_1", method: "GET", path: "/actuator/backup/nightly_1", status: 200,
			es: map[string]string{getBackup("nightly_1"): "ids-state-nightly_1"}},
		{name: "pair-get-nightly_1-current", method: "GET", path: "/actuator/backups/nightly_1", status: 200,
			es: map[string]string{getBackup("nightly_1"): "ids-state-nightly_1"}},
		{name: "pair-get-1", method: "GET", path: "/actuator/backups/1", status: 200, es: map[string]string{getBackup1: "ids-state-1"}},
		{name: "pair-get-12", method: "GET", path: "/actuator/backups/12", status: 200, es: map[string]string{getBackup("12"): "ids-state-12"}},
		{name: "pair-list", method: "GET", path: "/actuator/backups", status: 200, es: map[string]string{listAll: "ids-list"}},
		{name: "pair-list-legacy", method: "GET", path: "/actuator/backup", status: 200, es: map[string]string{listAll: "ids-list"}},
		{name: "pair-delete-nightly", method: "DELETE", path: "/actuator/backups/nightly", header: admin, status: 204,
			es:    map[string]string{getBackup("nightly"): "ids-get-nightly", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", putMarks: "marks-created", createJobs: "jobs-index-created", putJob: "job-created|job-updated", deleteNightly: "ids-delete-nightly"},
			check: deletes("nightly", "camunda_optimize_nightly_3.9.0_part_1_of_2", "camunda_optimize_nightly_3.9.0_part_2_of_2")},
		{name: "pair-delete-1", method: "DELETE", path: "/actuator/backup/1", header: admin, status: 204,
			es:    map[string]string{getBackup1: "ids-get-1", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", putMarks: "marks-created", createJobs: "jobs-index-created", putJob: "job-created|job-updated", deleteBoth1: "ids-delete-1"},
			check: deletes("1", "camunda_optimize_1_3.9.0_part_1_of_2", "camunda_optimize_1_3.9.0_part_2_of_2")},
		{name: "pair-restore-dry-run-nightly", method: "POST", path: "/actuator/backup/nightly/restore", body: `{"dryRun": true}`, header: admin, status: 200,
			es: map[string]string{getBackup("nightly"): "ids-get-nightly", resolveIdx: "resolve-empty", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", getCurrent: "current-none"}, noMutES: true},
		{name: "pair-restore-status-nightly_1", method: "GET", path: "/actuator/backups/nightly_1/restore", status: 404,
			es: map[string]string{getJob: "job-found-completed", getMarks: "job-none", getDrill: "job-none"}},

		// States, one request each.
		{name: "get-completed", method: "GET", path: "/actuator/backups/1", es: map[string]string{getBackup1: "state-completed"}, status: 200, wantES: []string{getBackup1}},
		{name: "get-completed-legacy", method: "GET", path: "/actuator/backup/1", es: map[string]string{getBackup1: "state-completed"}, status: 200},
		{name: "get-in-progress", method: "GET", path: "/actuator/backups/5", es: map[string]string{getBackup("5"): "state-in-progress"}, status: 200},
		{name: "get-between-parts", method: "GET", path: "/actuator/backups/2", es: map[string]string{getBackup("2"): "state-part1-only"}, status: 200,
			now: part1End.Add(30 * time.Second)},
		{name: "get-incomplete", method: "GET", path: "/actuator/backups/2", es: map[string]string{getBackup("2"): "state-part1-only", "GET " + noteDoc("2"): "note-missing"}, status: 200,
			wantES: []string{getBackup("2"), "GET " + noteDoc("2")}},
		{name: "get-incomplete-part2-vanished", method: "GET", path: "/actuator/backups/2", es: map[string]string{getBackup("2"): "state-part2-vanished", "GET " + noteDoc("2"): "note-found"}, status: 200},
		{name: "get-failed", method: "GET", path: "/actuator/backups/4", es: map[string]string{getBackup("4"): "state-partial"}, status: 200},
		{name: "get-incompatible", method: "GET", path: "/actuator/backups/1", es: map[string]string{getBackup1: "state-incompatible"}, status: 200},
		{name: "get-extra-snapshots", method: "GET", path: "/actuator/backups/3", es: map[string]string{getBackup("3"): "state-extra"}, status: 200},
		{name: "get-unknown", method: "GET", path: "/actuator/backups/1", es: map[string]string{getBackup1: "state-unknown"}, status: 404},
		{name: "get-missing-repo", method: "GET", path: "/actuator/backup/1", es: map[string]string{getBackup1: "state-missing-repo"}, status: 500},
		{name: "get-no-repository-configured", method: "GET", path: "/actuator/backups/1", status: 400, cfg: func(c *config) { c.Repository = "" }},

		// Listing.
		{name: "list-empty", method: "GET", path: "/actuator/backups", es: map[string]string{listAll: "list-empty"}, status: 200, wantES: []string{listAll}},
		{name: "list", method: "GET", path: "/actuator/backups", es: map[string]string{listAll: "list"}, status: 200, wantES: []string{listAll}},
		{name: "list-legacy", method: "GET", path: "/actuator/backup", es: map[string]string{listAll: "list"}, status: 200},
		{name: "list-limit", method: "GET", path: "/actuator/backups?limit=2", es: limitRoutes(), status: 200},
		{name: "list-limit-empty", method: "GET", path: "/actuator/backups?limit=2", es: map[string]string{listAll: "catalogue-empty"}, status: 200, wantES: []string{listAll}},
		{name: "list-limit-missing-repo", method: "GET", path: "/actuator/backups?limit=2", es: map[string]string{listAll: "catalogue-missing-repo"}, status: 500},
		{name: "list-bad-limit", method: "GET", path: "/actuator/backups?limit=-2", status: 400},
		{name: "list-missing-repo", method: "GET", path: "/actuator/backups", es: map[string]string{listAll: "list-missing-repo"}, status: 500},

		// Delete and the admin token.
		{name: "delete", method: "DELETE", path: "/actuator/backups/1", header: admin, status: 204,
			es:    map[string]string{getBackup1: "get-completed", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", putMarks: "marks-created", createJobs: "jobs-index-created", putJob: "job-created|job-updated", deleteBoth1: "delete-ack"},
			check: deletes("1", "camunda_optimize_1_3.9.0_part_1_of_2", "camunda_optimize_1_3.9.0_part_2_of_2")},
		{name: "delete-legacy", method: "DELETE", path: "/actuator/backup/1", header: admin, status: 204,
			es: map[string]string{getBackup1: "get-completed", getJob: "job-found-completed", getMarks: "job-none", getDrill: "job-none", createJobs: "jobs-index-created", putMarks: "marks-created", putJob: "job-updated", deleteBoth1: "delete-ack"}},
		{name: "delete-used-by-restore", method: "DELETE", path: "/actuator/backups/12", header: admin, status: 409,
			es: map[string]string{getBackup("12"): "get-completed-12", getJob: "job-found-running", getMarks: "job-none", getDrill: "job-none", createJobs: "jobs-index-created", putMarks: "marks-created"}, noMutES: true},
		{name: "delete-job-unreadable", method: "DELETE", path: "/actuator/backups/1", header: admin, status: 500,
			es: map[string]string{getBackup1: "get-completed", getJob: misrouted("get-repository"), getMarks: "job-none", getDrill: "job-none", createJobs: "jobs-index-created", putMarks: "marks-created"}, noMutES: true},
		{name: "delete-beside-running-restore", method: "DELETE", path: "/actuator/backups/1", header: admin, status: 204,
			es:    map[string]string{getBackup1: "get-completed", getJob: "job-found-running", getMarks: "job-none", getDrill: "job-none", createJobs: "jobs-index-created", putMarks: "marks-created", deleteBoth1: "delete-ack"},
			check: deletes("1", "camunda_optimize_1_3.9.0_part_1_of_2", "camunda_optimize_1_3.9.0_part_2_of_2")}, // the running restore's document is left alone
		{name: "delete-raced", method: "DELETE", path: "/actuator/backups/1", header: admin, status: 409,
			es: map[string]string{getBackup1: "get-completed", getJob: "job-found-completed", getMarks: "job-none", getDrill: "job-none", createJobs: "jobs-index-created", putMarks: "job-create-conflict"}, esRefused: true},
		{name: "delete-raced-marks-exist", method: "DELETE", path: "/actuator/backups/1", header: admin, status: 409,
			es: map[string]string{getBackup1: "get-completed", getMarks: "marks-backup-12", getDrill: "job-none", putMarks: "job-update-conflict"}, esRefused: true},
		{name: "delete-unknown", method: "DELETE", path: "/actuator/backups/1", header: admin, status: 404,
			es: map[string]string{getBackup1: "get-unknown"}, noMutES: true},
		{name: "delete-refused", method: "DELETE", path: "/actuator/backups/1", header: admin, status: 500,
			es: map[string]string{getBackup1: "get-completed", getJob: "job-none", getMarks: "job-none", getDrill: "job-none", putMarks: "marks-created", createJobs: "jobs-index-created", putJob: "job-created|job-updated", deleteBoth1: "delete-missing"}},
		{name: "delete-no-token-header", method: "DELETE", path: "/actuator/backups/1", status: 401},
		{name: "delete-wrong-token", method: "DELETE", path: "/actuator/backups/1", header: map[string]string{"Authorization": "Bearer nope"}, status: 401},
		{name: "delete-basic-auth", method: "DELETE", path: "/actuator/backups/1", header: map[string]string{"Authorization": "Basic dGVzdDp0ZXN0"}, status: 401},
		{name: "delete-admin-disabled", method: "DELETE", path: "/actuator/backups/1", header: admin, status: 403, cfg: func(c *config) { c.AdminToken = "" }},

		// Operations routes.
		{name: "health", method: "GET", path: "/actuator/health", status: 200,
			es: map[string]string{"GET /_cluster/health": "cluster-health", "GET /_snapshot/test-repo": "get-repository"}},
		{name: "health-cluster-red", method: "GET", path: "/actuator/health", status: 503,
			es: map[string]string{"GET /_cluster/health": "cluster-health-red", "GET /_snapshot/test-repo": "get-repository"}},
		{name: "health-repository-missing", method: "GET", path: "/actuator/health", status: 503,
			es: map[string]string{"GET /_cluster/health": "cluster-health", "GET /_snapshot/test-repo": "get-repository-missing"}},
		{name: "liveness", method: "GET", path: "/actuator/health/liveness", status: 200},
		{name: "readiness", method: "GET", path: "/actuator/health/readiness", status: 200},
		{name: "info", method: "GET", path: "/actuator/info", status: 200,
			es: map[string]string{readMetadata: "metadata", "GET /_nodes/_local": "nodes-info"}},
		{name: "unknown-route", method: "GET", path: "/actuator/nothing", status: 404},
		{name: "unknown-route-below-backups", method: "GET", path: "/actuator/backups/1/restore/now", status: 404},

		// A known path with another method: 405, the methods it answers in Allow, the JSON shape.
		{name: "method-not-allowed-create", method: "PUT", path: "/actuator/backup", status: 405,
			wantHeader: map[string]string{"Allow": "GET, HEAD, POST", "Content-Type": "application/json"}},
		{name: "method-not-allowed-backup", method: "POST", path: "/actuator/backups/1", status: 405,
			wantHeader: map[string]string{"Allow": "DELETE, GET, HEAD"}},
		{name: "method-not-allowed-health", method: "DELETE", path: "/actuator/health", status: 405,
			wantHeader: map[string]string{"Allow": "GET, HEAD"}},
	}
	runAPICases(t, cases)
}

// runAPICases runs apiCases, each against its own fake Elasticsearch and server.
func runAPICases(t *testing.T, cases []apiCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeES(t, tc.es)
			cfg := testConfig(fake.srv.URL)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			srv := newTestServer(t, cfg)
			if !tc.now.IsZero() {
				srv.now = func() time.Time { return tc.now }
			}
			res := serve(t, srv, tc.method, tc.path, tc.body, tc.header)
			finishBackground(srv) // let part 2 be started

			if res.Code != tc.status {
				t.Errorf("got status %d; want %d; body %s", res.Code, tc.status, res.Body)
			}
			assertGolden(t, tc.name, res)
			if tc.wantES != nil {
				if diff := cmp.Diff(tc.wantES, fake.sent()); diff != "" {
					t.Errorf("Elasticsearch requests (-want +got):\n%s", diff)
				}
			}
			if tc.check != nil {
				tc.check(t, fake)
			}
			if (tc.noMutES || res.Code/100 == 4 && !tc.esRefused) && len(fake.mutations()) > 0 {
				t.Errorf("got mutating requests %v for a refused request; want none", fake.mutations())
			}
			if res.Code == http.StatusUnauthorized && res.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("got 401 without WWW-Authenticate; want Bearer challenge")
			}
			for k, want := range tc.wantHeader {
				if got := res.Header().Get(k); got != want {
					t.Errorf("got header %s %q; want %q", k, got, want)
				}
			}
			checkErrorShape(t, res)
		})
	}
}

// deletes checks what a DELETE of backup id did: exactly these snapshots deleted (none: it was
// refused); the backup marked as being deleted before the restore job and the drill were read,
// and both read before anything was deleted (so a restore or drill starting meanwhile sees the
// mark, see deleteMarks); the mark taken back at the end; the restore job's document never
// written (a running restore's lease is not the DELETE's to touch).
func deletes(id string, snapshots ...string) func(*testing.T, *fakeES) {
	return func(t *testing.T, fake *fakeES) {
		t.Helper()
		var deleted []string
		marked, unmarked, jobRead, drillRead, firstDelete := -1, -1, -1, -1, -1
		for i, r := range fake.received() {
			first := func(at *int) {
				if *at < 0 {
					*at = i
				}
			}
			switch {
			case strings.HasPrefix(r.key, "DELETE /_snapshot/test-repo/") && r.status/100 == 2:
				first(&firstDelete)
				deleted = append(deleted, strings.Split(strings.TrimPrefix(r.key, "DELETE /_snapshot/test-repo/"), ",")...)
			case r.key == putMarks && r.status/100 == 2:
				var marks deleteMarks
				if err := json.Unmarshal([]byte(r.body), &marks); err != nil {
					t.Fatal(err)
				}
				if _, ok := marks.Backups[id]; ok {
					first(&marked)
				} else if marked >= 0 {
					unmarked = i
				}
			case r.key == getJob:
				first(&jobRead)
			case r.key == getDrill:
				first(&drillRead)
			case r.key == putJob:
				t.Errorf("got a write of the restore job (%s); want a DELETE to leave it alone", r.key)
			}
		}
		slices.Sort(deleted)
		if !slices.Equal(deleted, snapshots) {
			t.Errorf("got snapshots deleted %v; want %v", deleted, snapshots)
		}
		reads := max(jobRead, drillRead)
		if marked < 0 || jobRead < marked || drillRead < marked || len(snapshots) > 0 && firstDelete < reads {
			t.Errorf("got the mark stored at request %d, the restore job read at %d, the drill at %d, the first delete at %d; want them in this order", marked, jobRead, drillRead, firstDelete)
		}
		if unmarked < max(reads, firstDelete) {
			t.Errorf("got the mark of backup %s taken back at request %d, the reads at %d, the first delete at %d; want it taken back after", id, unmarked, reads, firstDelete)
		}
	}
}

// checkErrorShape checks that an error answer is Optimize's error body: an errorCode, that
// code's fixed sentence as errorMessage, and a particular detailedMessage, never the internal
// text of the error.
func checkErrorShape(t *testing.T, res *httptest.ResponseRecorder) {
	t.Helper()
	if res.Code < 400 || res.Code == http.StatusServiceUnavailable { // 503 is the health answer, DOWN
		return
	}
	var body apiError
	if err := json.Unmarshal(res.Body.Bytes(), &body); err != nil {
		t.Fatalf("got non-JSON error body %q; want Optimize's error shape", res.Body)
	}
	if want, ok := errorSentences[body.ErrorCode]; !ok || body.ErrorMessage != want {
		t.Errorf("got errorCode %q with errorMessage %q; want a known code with its fixed sentence %q", body.ErrorCode, body.ErrorMessage, want)
	}
	if body.DetailedMessage == "" || body.DetailedMessage == body.ErrorMessage || strings.HasPrefix(body.DetailedMessage, "no snapshots for backup") {
		t.Errorf("got detailedMessage %q; want the particular sentence of this error", body.DetailedMessage)
	}
}

// withRoutes is routes with more added.
func withRoutes(routes, more map[string]string) map[string]string {
	maps.Copy(routes, more)
	return routes
}

// listedRoutes serve the recorded list name (saveList): its catalogue, and the read of its
// backups' snapshots by name, at the test's repository.
func listedRoutes(t *testing.T, name string) map[string]string {
	rec := loadRecording(t, name+"-named")
	method, target, _ := strings.Cut(rec.Request, " ")
	path, _, _ := strings.Cut(target, "?")
	parts := strings.SplitN(path, "/", 4) // "", "_snapshot", the repository, the names
	return map[string]string{listAll: name + "-catalogue", method + " /_snapshot/test-repo/" + parts[3]: name + "-named"}
}

// serve sends one request through the server's real router.
func serve(t *testing.T, srv *server, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res := httptest.NewRecorder()
	servedRequests.Store(res, req) // for checkOpenAPI
	srv.routes().ServeHTTP(res, req)
	return res
}

// assertGolden compares status and body with testdata/golden/name.golden (go test -update
// rewrites them), after validating the whole answer against openapi.json. Long request echoes
// are cut so golden files stay readable.
func assertGolden(t *testing.T, name string, res *httptest.ResponseRecorder) {
	t.Helper()
	checkOpenAPI(t, name, res)
	// Fake servers listen on random ports.
	body := regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(res.Body.String(), "127.0.0.1:PORT")
	if len(body) > 4000 {
		body = body[:2000] + "...[cut]..." + body[len(body)-500:]
	}
	golden.Assert(t, fmt.Sprintf("%d %s\n%s", res.Code, http.StatusText(res.Code), body), "golden/"+name+".golden")
}

// TestConcurrentCreateOneWins sends 50 creates of one new ID at once: exactly one starts the
// backup, 49 get 409, and Elasticsearch sees one create of part 1.
func TestConcurrentCreateOneWins(t *testing.T) {
	fake := newFakeES(t, createRoutes())
	cfg := testConfig(fake.srv.URL)
	// The fake's answers do not change once part 1 exists, so keep the winner from finishing
	// (and releasing the ID) while the others still arrive.
	cfg.PollInterval = time.Hour
	srv := newTestServer(t, cfg)
	const n = 50
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- serve(t, srv, "POST", "/actuator/backups", `{"backupId": 1}`, nil).Code
		}()
	}
	wg.Wait()
	close(codes)
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	srv.backups.shutdown(stopped)
	srv.watches.shutdown(stopped)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if diff := cmp.Diff(map[int]int{202: 1, 409: n - 1}, count); diff != "" {
		t.Errorf("status counts (-want +got):\n%s", diff)
	}
	puts := 0
	for _, r := range fake.sent() {
		if r == putPart1 {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("got %d creates of part 1; want 1", puts)
	}
}

// TestElasticsearchUnreachable checks the status each route family gives when nothing answers
// at Elasticsearch's address: 500 on 3.9's routes, 502 on 3.10+'s, on every route that reads
// Elasticsearch (the restore routes too, whose handlers get the family from routes() through
// the request), with the fixed sentence of the code and the address in detailedMessage.
func TestElasticsearchUnreachable(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"unreachable-create-legacy", "POST", "/actuator/backup", `{"backupId": "1"}`, 500},
		{"unreachable-create", "POST", "/actuator/backups", `{"backupId": 1}`, 502},
		{"unreachable-get-legacy", "GET", "/actuator/backup/1", "", 500},
		{"unreachable-get", "GET", "/actuator/backups/1", "", 502},
		{"unreachable-list", "GET", "/actuator/backups", "", 502},
		{"unreachable-list-legacy", "GET", "/actuator/backup", "", 500},
		{"unreachable-delete-legacy", "DELETE", "/actuator/backup/1", "", 500},
		{"unreachable-delete", "DELETE", "/actuator/backups/1", "", 502},
		{"unreachable-restore-legacy", "POST", "/actuator/backup/1/restore", "", 500},
		{"unreachable-restore-status", "GET", "/actuator/backups/1/restore", "", 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, testConfig(closed.URL))
			res := serve(t, srv, tc.method, tc.path, tc.body, map[string]string{"Authorization": "Bearer test-admin-token"})
			if res.Code != tc.status {
				t.Errorf("got %d; want %d", res.Code, tc.status)
			}
			assertGolden(t, tc.name, res)
			var body apiError
			if err := json.Unmarshal(res.Body.Bytes(), &body); err != nil {
				t.Fatalf("got non-JSON body %q", res.Body)
			}
			if want := map[int]string{500: "serverError", 502: "elasticsearchConnectionError"}[tc.status]; body.ErrorCode != want || body.ErrorMessage != errorSentences[want] {
				t.Errorf("got errorCode %q, errorMessage %q; want %q with its fixed sentence", body.ErrorCode, body.ErrorMessage, want)
			}
			if !strings.Contains(body.DetailedMessage, closed.URL) || !strings.Contains(body.DetailedMessage, "OPTIMIZE_ELASTICSEARCH_URLS") {
				t.Errorf("got detailedMessage %q; want it to name the address and the variable that sets it", body.DetailedMessage)
			}
		})
	}
}

// TestPrometheusCountsRequests checks that answered requests are counted by route pattern (not
// by raw path, which would grow without bound) and status.
func TestPrometheusCountsRequests(t *testing.T) {
	srv := newTestServer(t, testConfig("http://127.0.0.1:1"))
	serve(t, srv, "GET", "/actuator/health/liveness", "", nil)
	serve(t, srv, "GET", "/actuator/backups/Bad", "", nil)
	body := serve(t, srv, "GET", "/actuator/prometheus", "", nil).Body.String()
	for _, want := range []string{
		`optimize_backup_http_requests_total{method="GET",route="/actuator/health/liveness",status="200"} 1`,
		`optimize_backup_http_requests_total{method="GET",route="/actuator/backups/{id}",status="400"} 1`,
		`optimize_backup_backups_in_flight 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("got metrics\n%s\nwant a line %s", body, want)
		}
	}
}

// TestAPISnapshotNameRefusedByElasticsearch checks the safety net behind the ID rules: should
// Elasticsearch refuse a snapshot name (here its real answer to a name with '#'), the client
// gets a 400 with Elasticsearch's reason, never a 500.
func TestAPISnapshotNameRefusedByElasticsearch(t *testing.T) {
	name := snapshotName("a#b", "3.9.0", 1)
	fake := newFakeES(t, map[string]string{"PUT /_snapshot/test-repo/" + name: "ids-create-invalid-name"})
	srv := newTestServer(t, testConfig(fake.srv.URL))
	err := srv.startSnapshot(context.Background(), name, []string{"optimize-import-index_v3"}, snapshotMetadata{BackupID: "a#b"})
	if err == nil {
		t.Fatal("got no error; want Elasticsearch's refusal")
	}
	for _, f := range []family{legacy, current} {
		req := inFamilyRequest(f)
		status, body := srv.describeError(req, err)
		if status != http.StatusBadRequest || body.ErrorCode != "badRequestError" || !strings.Contains(body.DetailedMessage, "must not contain '#'") {
			t.Errorf("family %d: got %d %+v; want 400 badRequestError with Elasticsearch's reason", f, status, body)
		}
	}
}

// inFamilyRequest is a request that routes() put in family f.
func inFamilyRequest(f family) *http.Request {
	var got *http.Request
	inFamily(f, func(_ http.ResponseWriter, r *http.Request) { got = r })(httptest.NewRecorder(), httptest.NewRequest("POST", f.base(), nil))
	return got
}

// TestAPILongIDFitsElasticsearch checks the two limits Elasticsearch puts on a long ID that
// Optimize allows (up to 3996 characters) beyond its request line: the snapshot's metadata must
// stay within 1 KB (the ID is then left out of it; the name carries it), and a delete whose two
// names would not fit one request line sends one request per name.
func TestAPILongIDFitsElasticsearch(t *testing.T) {
	id := strings.Repeat("a", 2000)
	names := []string{snapshotName(id, "3.9.0", 1), snapshotName(id, "3.9.0", 2)}
	put := "PUT /_snapshot/test-repo/" + names[0]
	fake := newFakeES(t, map[string]string{put: "create-accepted",
		"DELETE /_snapshot/test-repo/" + names[0]: "ids-delete-1", "DELETE /_snapshot/test-repo/" + names[1]: "ids-delete-1"})
	srv := newTestServer(t, testConfig(fake.srv.URL))
	ctx := context.Background()
	if err := srv.startSnapshot(ctx, names[0], []string{"optimize-import-index_v3"}, snapshotMetadata{BackupID: id, Version: "3.9.0", PartNo: 1, PartCount: 2}); err != nil {
		t.Fatalf("start snapshot: got %v; want it started", err)
	}
	var sent snapshotRequest
	if err := json.Unmarshal([]byte(fake.bodiesOf(put)[0]), &sent); err != nil {
		t.Fatal(err)
	}
	if meta, _ := json.Marshal(sent.Metadata); len(meta) > esMaxMetadataBytes || sent.Metadata.BackupID != "" || sent.Metadata.Nonce == "" {
		t.Errorf("got metadata %s (%d bytes); want it under %d bytes, without the ID, with the nonce", meta, len(meta), esMaxMetadataBytes)
	}
	if err := srv.deleteSnapshots(ctx, names); err != nil {
		t.Fatalf("delete: got %v; want both deleted", err)
	}
	want := []string{put, "DELETE /_snapshot/test-repo/" + names[0], "DELETE /_snapshot/test-repo/" + names[1]}
	if diff := cmp.Diff(want, fake.sent()); diff != "" {
		t.Errorf("Elasticsearch requests (-want +got):\n%s", diff)
	}
}
