package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// useOpenSearch configures a golden test's sidecar for OpenSearch, as
// CAMUNDA_OPTIMIZE_DATABASE=opensearch does: its clients are elastic-transport-go's.
func useOpenSearch(c *config) { c.Database = databaseOpenSearch }

// TestProductCheck checks checkProduct on the recorded roots of both products (the test
// Elasticsearch answers GET / with a 405, which still carries X-Elastic-Product): a sidecar
// configured for the product that answers starts; one configured for the other stops with a
// sentence that names both products and CAMUNDA_OPTIMIZE_DATABASE.
func TestProductCheck(t *testing.T) {
	for _, tc := range []struct {
		database, root, wantErr string
	}{
		{databaseElasticsearch, "root", ""},
		{databaseOpenSearch, "opensearch/root", ""},
		{databaseElasticsearch, "opensearch/root", "is OpenSearch 2.19.6, but CAMUNDA_OPTIMIZE_DATABASE is elasticsearch (the default); set CAMUNDA_OPTIMIZE_DATABASE=opensearch"},
		{databaseOpenSearch, "root", "is Elasticsearch, but CAMUNDA_OPTIMIZE_DATABASE is opensearch; unset CAMUNDA_OPTIMIZE_DATABASE"},
	} {
		fake := newFakeES(t, map[string]string{"GET /": tc.root})
		cfg := testConfig(fake.srv.URL)
		cfg.Database = tc.database
		err := newTestServer(t, cfg).checkProduct(t.Context())
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s configured, %s answers: got %v; want no error", tc.database, tc.root, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s configured, %s answers: got %v; want an error saying %q", tc.database, tc.root, err, tc.wantErr)
		}
	}
}

// TestAPIOpenSearch replays OpenSearch's own answers (testdata/opensearch) through the routes
// where it differs from Elasticsearch: a list is one request without sort, order, size or after
// (the fake refuses any other query), sorted newest first by the sidecar; a pattern matching
// nothing (a 404 there) is no backup; a missing repository (a 404, not a 200 with failures) and a
// name in use (invalid_snapshot_name_exception) are answered as on Elasticsearch, with the same
// golden files where the answer is the same; a create sends cluster_manager_timeout.
func TestAPIOpenSearch(t *testing.T) {
	var part1Done getSnapshotsAnswer
	if err := json.Unmarshal(loadRecording(t, "opensearch/get-part1-done-1").Body, &part1Done); err != nil {
		t.Fatal(err)
	}
	createNow := time.UnixMilli(part1Done.Snapshots[0].EndMillis).Add(time.Second)
	os := func(name string) string { return openSearchRecordings + name }
	beforeCreate := map[string]string{getBackup1: os("get-unknown"), readMetadata: os("metadata"), resolveIdx: os("resolve")}
	with := func(routes map[string]string, more ...string) map[string]string {
		out := map[string]string{}
		for k, v := range routes {
			out[k] = v
		}
		for i := 0; i+1 < len(more); i += 2 {
			out[more[i]] = more[i+1]
		}
		return out
	}
	runAPICases(t, []apiCase{
		{name: "opensearch-list", method: "GET", path: "/actuator/backups", es: map[string]string{listAll: os("list")}, status: 200, cfg: useOpenSearch},
		{name: "list-empty", method: "GET", path: "/actuator/backups", es: map[string]string{listAll: os("list-empty")}, status: 200, cfg: useOpenSearch},
		{name: "opensearch-list-missing-repo", method: "GET", path: "/actuator/backups", es: map[string]string{listAll: os("list-missing-repo")}, status: 500, cfg: useOpenSearch},
		{name: "opensearch-list-limit-empty", method: "GET", path: "/actuator/backups?limit=2", es: map[string]string{listAll: os("catalogue-empty")}, status: 200, cfg: useOpenSearch, wantES: []string{listAll}},
		{name: "opensearch-list-limit-missing-repo", method: "GET", path: "/actuator/backups?limit=2", es: map[string]string{listAll: os("catalogue-missing-repo")}, status: 500, cfg: useOpenSearch},
		{name: "get-unknown", method: "GET", path: "/actuator/backups/1", es: map[string]string{getBackup1: os("state-unknown")}, status: 404, cfg: useOpenSearch},
		{name: "opensearch-get-missing-repo", method: "GET", path: "/actuator/backups/1", es: map[string]string{getBackup1: os("state-missing-repo")}, status: 500, cfg: useOpenSearch},
		{name: "opensearch-get-completed", method: "GET", path: "/actuator/backups/1", es: map[string]string{getBackup1: os("state-completed")}, status: 200, cfg: useOpenSearch},
		{name: "opensearch-create", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 202, cfg: useOpenSearch, now: createNow,
			es:     with(beforeCreate, putPart1, os("create-accepted"), pollPart1, os("get-part1-done-1"), putPart2, os("create-accepted")),
			wantES: []string{getBackup1, readMetadata, resolveIdx, putPart1, pollPart1, putPart2, pollPart1}},
		{name: "create-name-in-use-running", method: "POST", path: "/actuator/backups", body: `{"backupId": 1}`, status: 409, cfg: useOpenSearch,
			es: with(beforeCreate, putPart1, os("create-in-use-running")), esRefused: true},
		{name: "create-name-in-use-exists", method: "POST", path: "/actuator/backup", body: `{"backupId": "1"}`, status: 409, cfg: useOpenSearch,
			es: with(beforeCreate, putPart1, os("create-in-use-exists")), esRefused: true},
	})
}

// TestOpenSearchListRefusesPaging checks the recorded refusal that makes the sidecar send
// OpenSearch no sort, order, size or after: OpenSearch answers them 400.
func TestOpenSearchListRefusesPaging(t *testing.T) {
	rec := loadRecording(t, "opensearch/list-sorted-refused")
	servedRecordings.Store("opensearch/list-sorted-refused", true)
	if rec.Status != 400 || !strings.Contains(string(rec.Body), "unrecognized parameters: [order], [size], [sort]") {
		t.Errorf("got %d %s; want 400 naming order, size and sort as unrecognized", rec.Status, rec.Body)
	}
}
