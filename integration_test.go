package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// realES is the Elasticsearch that testenv/with-es.sh started for this test run.
type realES struct {
	t      testing.TB
	url    string
	runDir string
}

// needES returns the real Elasticsearch, skips the test where none runs, and fails it in CI
// (CI=true), where an integration test must never be skipped.
func needES(t *testing.T) realES {
	t.Helper()
	url, runDir := os.Getenv("OPTIMIZE_BACKUP_TEST_ES_URL"), os.Getenv("OPTIMIZE_BACKUP_TEST_ES_RUN_DIR")
	if url == "" || runDir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but no Elasticsearch: run the tests through testenv/with-es.sh (make test)")
		}
		t.Skip("no real Elasticsearch: run make test (testenv/with-es.sh) for the integration tests")
	}
	es := realES{t: t, url: url, runDir: runDir}
	if status, body := es.do("GET", "/_cluster/health", ""); status != 200 {
		t.Fatalf("Elasticsearch at %s: got %d %s; want 200", url, status, body)
	}
	return es
}

// do sends one request to Elasticsearch.
func (es realES) do(method, path, body string) (int, []byte) {
	es.t.Helper()
	return httpDo(es.t, method, es.url+path, body, nil)
}

// must sends one request to Elasticsearch and fails the test unless it succeeded.
func (es realES) must(method, path, body string) []byte {
	es.t.Helper()
	status, b := es.do(method, path, body)
	if status >= 300 {
		es.t.Fatalf("%s %s: got %d %s; want 2xx", method, path, status, b)
	}
	return b
}

// newRepo registers a fresh fs repository for one test, so tests do not see each other's
// backups, and removes it at the end.
func (es realES) newRepo(name string) string {
	es.t.Helper()
	location := filepath.Join(es.runDir, "repo", fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))
	es.must("PUT", "/_snapshot/"+name, fmt.Sprintf(`{"type":"fs","settings":{"location":%q}}`, location))
	es.t.Cleanup(func() { es.do("DELETE", "/_snapshot/"+name, "") })
	return name
}

// snapshots returns the snapshots in a repository matching a pattern, as Elasticsearch reports
// them.
func (es realES) snapshots(repo, pattern string) []snapshot {
	es.t.Helper()
	var answer getSnapshotsAnswer
	status, b := es.do("GET", "/_snapshot/"+repo+"/"+pattern, "")
	if status == http.StatusNotFound && testDB() == databaseOpenSearch && bytes.Contains(b, []byte("snapshot_missing_exception")) {
		return nil // OpenSearch's answer to a pattern that matches nothing
	}
	if status != http.StatusOK {
		es.t.Fatalf("GET /_snapshot/%s/%s: got %d %s; want 200", repo, pattern, status, b)
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		es.t.Fatal(err)
	}
	sort.Slice(answer.Snapshots, func(i, j int) bool { return answer.Snapshots[i].Name < answer.Snapshots[j].Name })
	return answer.Snapshots
}

// httpDo sends one HTTP request and returns status and body.
func httpDo(t testing.TB, method, url, body string, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// itToken is the admin token of the sidecars the integration tests start.
const itToken = "integration-test-admin-token"

// testDB is the database the integration tests run on: the DB testenv/with-es.sh started
// (OPTIMIZE_BACKUP_TEST_DB), elasticsearch (default) or opensearch. Every integration test runs
// on both; a sidecar started by startSidecar is configured for it.
func testDB() string {
	if db := os.Getenv("OPTIMIZE_BACKUP_TEST_DB"); db != "" {
		return db
	}
	return databaseElasticsearch
}

// elasticsearchOnly skips a test on OpenSearch, saying why it proves nothing there.
func elasticsearchOnly(t *testing.T, why string) {
	t.Helper()
	if testDB() != databaseElasticsearch {
		t.Skip("Elasticsearch only: " + why)
	}
}

// openSearchTwins are the OpenSearch variables Optimize reads instead of the Elasticsearch
// ones the tests write, with CAMUNDA_OPTIMIZE_DATABASE=opensearch.
var openSearchTwins = map[string]string{
	"OPTIMIZE_ELASTICSEARCH_HOST":                                "CAMUNDA_OPTIMIZE_OPENSEARCH_HOST",
	"OPTIMIZE_ELASTICSEARCH_HTTP_PORT":                           "CAMUNDA_OPTIMIZE_OPENSEARCH_HTTP_PORT",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME":           "CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_USERNAME",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD":           "CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_PASSWORD",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_ENABLED":                 "CAMUNDA_OPTIMIZE_OPENSEARCH_SSL_ENABLED",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES": "CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_SSL_CERTIFICATE_AUTHORITIES",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX":       "CAMUNDA_OPTIMIZE_OPENSEARCH_SETTINGS_INDEX_PREFIX",
}

// forTestDB is a sidecar's environment for testDB: on OpenSearch, CAMUNDA_OPTIMIZE_DATABASE
// and Optimize's OpenSearch variables in place of the Elasticsearch ones.
func forTestDB(vars map[string]string) map[string]string {
	if testDB() != databaseOpenSearch {
		return vars
	}
	out := map[string]string{"CAMUNDA_OPTIMIZE_DATABASE": databaseOpenSearch}
	for k, v := range vars {
		if twin, ok := openSearchTwins[k]; ok {
			k = twin
		}
		out[k] = v
	}
	return out
}

// sidecar is an optimize-backup started through run, as main starts it.
type sidecar struct {
	t   *testing.T
	url string
	// stop stops it as SIGTERM does (run's context ends) and waits until run returned.
	stop func()
	// logs returns every log line it wrote so far.
	logs func() string
}

// startSidecar runs the sidecar with this environment (plus a free port) until the test ends
// or stop is called.
func startSidecar(t *testing.T, environment map[string]string) sidecar {
	t.Helper()
	vars := map[string]string{"MANAGEMENT_SERVER_PORT": "0", "OPTIMIZE_BACKUP_POLL_INTERVAL": "100ms", "OPTIMIZE_BACKUP_ADMIN_TOKEN": itToken}
	for k, v := range forTestDB(environment) {
		vars[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs, logWriter := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, func(k string) string { return vars[k] }, logWriter)
		logWriter.Close()
	}()
	addr := make(chan string, 1)
	var mu sync.Mutex
	var written strings.Builder
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		scanner := bufio.NewScanner(logs)
		for scanner.Scan() {
			mu.Lock()
			written.Write(scanner.Bytes())
			written.WriteByte('\n')
			mu.Unlock()
			var line struct{ Msg, Addr string }
			if json.Unmarshal(scanner.Bytes(), &line) == nil && line.Msg == "serving" {
				addr <- line.Addr
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
			<-scanned
		})
	}
	t.Cleanup(stop)
	sc := sidecar{t: t, stop: stop, logs: func() string { mu.Lock(); defer mu.Unlock(); return written.String() }}
	select {
	case a := <-addr:
		_, port, _ := net.SplitHostPort(a)
		sc.url = "http://127.0.0.1:" + port
		return sc
	case err := <-done:
		done <- err // for stop
		t.Fatalf("run ended before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("sidecar did not serve within 10 s")
	}
	return sc
}

// call sends one request to the sidecar.
func (s sidecar) call(method, path, body string) (int, []byte) {
	s.t.Helper()
	return httpDo(s.t, method, s.url+path, body, map[string]string{"Authorization": "Bearer " + itToken})
}

// wireID is a backup ID as the API answers it: a JSON number (3.10+ routes, integer IDs) or
// a JSON string.
type wireID string

func (w *wireID) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*w = wireID(s)
		return nil
	}
	*w = wireID(b)
	return nil
}

func (w wireID) String() string { return string(w) }

// wireInfo is a backup as the API answers it.
type wireInfo struct {
	BackupID wireID
	State    string
	Details  []snapshotDetail
}

// info GETs one backup (path below the sidecar's address) and returns status, body and info.
func (s sidecar) info(path string) (int, []byte, wireInfo) {
	s.t.Helper()
	status, body := s.call("GET", path, "")
	var info wireInfo
	json.Unmarshal(body, &info)
	return status, body, info
}

// infos lists the backups on a route family's base path and returns status, body and infos.
func (s sidecar) infos(base string) (int, []byte, []wireInfo) {
	s.t.Helper()
	status, body := s.call("GET", base, "")
	var infos []wireInfo
	json.Unmarshal(body, &infos)
	return status, body, infos
}

// state returns the state the sidecar reports for a backup.
func (s sidecar) state(id string) string {
	s.t.Helper()
	status, b := s.call("GET", "/actuator/backups/"+id, "")
	if status != 200 {
		s.t.Fatalf("GET backup %s: got %d %s; want 200", id, status, b)
	}
	var info struct{ State string }
	json.Unmarshal(b, &info)
	return info.State
}

// waitState polls the backup until it reaches want, failing after 60 s or on an unexpected
// final state.
func (s sidecar) waitState(id, want string) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := s.state(id)
		if got == want {
			return
		}
		if got != stateInProgress || time.Now().After(deadline) {
			s.t.Fatalf("backup %s: got state %s; want %s", id, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sidecarEnv is the environment of a sidecar on the real Elasticsearch with this repository.
func (es realES) sidecarEnv(repo string) map[string]string {
	return map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": es.url, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": repo}
}

// TestIntegrationBackupLifecycle creates a backup on the real node and checks what lands in
// Elasticsearch: IN_PROGRESS then COMPLETED, both names with the version tag read from the
// metadata index, the metadata, and the exact index split (the nested installation
// optimize-east, the foreign optimize-logs-2026.11 and the unrelated index absent), then a duplicate (409) and an unknown ID (404).
func TestIntegrationBackupLifecycle(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("lifecycle")
	sc := startSidecar(t, es.sidecarEnv(repo))

	status, body := sc.call("POST", "/actuator/backups", `{"backupId": 100}`)
	if status != 202 {
		t.Fatalf("create: got %d %s; want 202", status, body)
	}
	if got := sc.state("100"); got != stateInProgress {
		t.Errorf("right after create: got %s; want IN_PROGRESS", got)
	}
	sc.waitState("100", stateCompleted)

	snaps := es.snapshots(repo, "camunda_optimize_100_*")
	var names []string
	for _, s := range snaps {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"camunda_optimize_100_3.9.0_part_1_of_2", "camunda_optimize_100_3.9.0_part_2_of_2"}, names); diff != "" {
		t.Fatalf("snapshot names (-want +got):\n%s", diff)
	}
	wantPart1 := []string{"optimize-import-index_v3", "optimize-position-based-import-index_v2", "optimize-timestamp-based-import-index_v4"}
	wantPart2 := []string{"optimize-collection_v5", "optimize-dashboard_v8", "optimize-external-process-variable_v2-000001", "optimize-metadata_v3",
		"optimize-process-definition_v6", "optimize-process-instance-invoice_v8", "optimize-process-instance-order-fulfilment_v8",
		"optimize-process-instance-shipping_v8", "optimize-single-process-report_v10"}
	// Both parts carry the same backup nonce, a random token; compared apart, as the nonces.
	if pair, _ := snaps[0].Metadata["backupNonce"].(string); len(pair) < 16 || pair != snaps[1].Metadata["backupNonce"] {
		t.Errorf("got backupNonce %q and %q; want the same random token in both parts", snaps[0].Metadata["backupNonce"], snaps[1].Metadata["backupNonce"])
	}
	for i, want := range [][]string{wantPart1, wantPart2} {
		delete(snaps[i].Metadata, "backupNonce")
		got := slices.Sorted(slices.Values(snaps[i].Indices))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("indices of part %d (-want +got):\n%s", i+1, diff)
		}
		// The nonce differs per request: it must be there, and is compared apart.
		if nonce, _ := snaps[i].Metadata["nonce"].(string); len(nonce) < 16 {
			t.Errorf("metadata of part %d: got nonce %q; want a random token", i+1, snaps[i].Metadata["nonce"])
		}
		delete(snaps[i].Metadata, "nonce")
		wantMeta := map[string]any{"backupId": "100", "version": "3.9.0", "partNo": float64(i + 1), "partCount": float64(2), "createdBy": "optimize-backup", "indexPrefix": "optimize"}
		if diff := cmp.Diff(wantMeta, snaps[i].Metadata); diff != "" {
			t.Errorf("metadata of part %d (-want +got):\n%s", i+1, diff)
		}
	}
	if snaps[1].StartMillis < snaps[0].EndMillis {
		t.Errorf("part 2 started at %d, before part 1 ended at %d; want it after", snaps[1].StartMillis, snaps[0].EndMillis)
	}

	if status, body := sc.call("POST", "/actuator/backup", `{"backupId": "100"}`); status != 409 || !bytes.Contains(body, []byte("camunda_optimize_100_3.9.0_part_1_of_2")) {
		t.Errorf("duplicate: got %d %s; want 409 naming the existing snapshots", status, body)
	}
	if status, body := sc.call("GET", "/actuator/backups/101", ""); status != 404 {
		t.Errorf("unknown: got %d %s; want 404", status, body)
	}
}

// TestIntegrationErrors checks the statuses for a repository Elasticsearch does not know (500
// naming it) and for an Elasticsearch that is not there (500 on 3.9 routes, 502 on 3.10+).
func TestIntegrationErrors(t *testing.T) {
	es := needES(t)
	sc := startSidecar(t, es.sidecarEnv("not-registered"))
	status, body := sc.call("POST", "/actuator/backups", `{"backupId": 1}`)
	if status != 500 || !bytes.Contains(body, []byte("No repository with name [not-registered] could be found.")) {
		t.Errorf("unregistered repository: got %d %s; want 500 naming it", status, body)
	}

	// Nothing listens on a port just released: Elasticsearch is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	sc = startSidecar(t, map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": down, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "test-repo"})
	if status, body := sc.call("GET", "/actuator/backup/1", ""); status != 500 {
		t.Errorf("down, 3.9 route: got %d %s; want 500", status, body)
	}
	if status, body := sc.call("POST", "/actuator/backups", `{"backupId": 1}`); status != 502 {
		t.Errorf("down, 3.10 route: got %d %s; want 502", status, body)
	}
	if status, _ := sc.call("GET", "/actuator/health/readiness", ""); status != 200 {
		t.Errorf("readiness with Elasticsearch down: got %d; want 200 (never make Optimize unready)", status)
	}
	if status, _ := sc.call("GET", "/actuator/health", ""); status != 503 {
		t.Errorf("health with Elasticsearch down: got %d; want 503", status)
	}
}

// TestIntegrationPart2Deleted deletes part 2 of a completed backup through Elasticsearch: the
// backup must then be INCOMPLETE (part 1 ended long before, past the grace period).
func TestIntegrationPart2Deleted(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("part2-deleted")
	env := es.sidecarEnv(repo)
	sc := startSidecar(t, env)
	if status, body := sc.call("POST", "/actuator/backups", `{"backupId": 7}`); status != 202 {
		t.Fatalf("create: got %d %s", status, body)
	}
	sc.waitState("7", stateCompleted)
	es.must("DELETE", "/_snapshot/"+repo+"/camunda_optimize_7_3.9.0_part_2_of_2", "")

	// A second replica with no grace period: it has nothing in flight, so what it reports
	// comes from Elasticsearch alone.
	env["OPTIMIZE_BACKUP_PART2_GRACE"] = "0s"
	replica := startSidecar(t, env)
	if got := replica.state("7"); got != stateIncomplete {
		t.Errorf("part 2 deleted: got %s; want INCOMPLETE", got)
	}
}

// TestIntegrationFailedSnapshot makes Elasticsearch fail part 1 for real (the files of a shard
// are unreadable to it) and checks the backup is FAILED with Elasticsearch's reason. It uses its
// own prefix, so the shard it breaks belongs to no other test.
func TestIntegrationFailedSnapshot(t *testing.T) {
	es := needES(t)
	for _, ix := range []string{"failing-import-index_v3", "failing-report_v1"} {
		es.must("PUT", "/"+ix, `{"settings":{"number_of_shards":1,"number_of_replicas":0}}`)
		es.must("POST", "/"+ix+"/_doc?refresh=true", `{"a":1}`)
		t.Cleanup(func() { es.do("DELETE", "/"+ix, "") })
	}
	es.must("POST", "/failing-import-index_v3/_flush", "")
	dir := es.shardDir("failing-import-index_v3")
	files, _ := filepath.Glob(filepath.Join(dir, "_*"))
	if len(files) == 0 {
		t.Fatalf("no segment files in %s", dir)
	}
	for _, f := range files {
		if err := os.Chmod(f, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(f, 0o644) })
	}
	repo := es.newRepo("failing")
	env := es.sidecarEnv(repo)
	env["CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX"] = "failing"
	env["OPTIMIZE_VERSION"] = "3.9.0"
	sc := startSidecar(t, env)
	if status, body := sc.call("POST", "/actuator/backups", `{"backupId": 9}`); status != 202 {
		t.Fatalf("create: got %d %s", status, body)
	}
	sc.waitState("9", stateFailed)
	_, body := sc.call("GET", "/actuator/backups/9", "")
	var info struct{ FailureReason string }
	json.Unmarshal(body, &info)
	if !strings.Contains(info.FailureReason, "camunda_optimize_9_3.9.0_part_1_of_2") || !strings.Contains(info.FailureReason, "AccessDenied") {
		t.Errorf("got failureReason %q; want it to name part 1 and Elasticsearch's reason", info.FailureReason)
	}
	if got := es.snapshots(repo, "camunda_optimize_9_*"); len(got) != 1 {
		t.Errorf("got %d snapshots; want only part 1 (part 2 must not start after a failed part 1)", len(got))
	}
}

// TestIntegrationReplicasRace sends one new ID to two sidecars at once, 10 times each: exactly
// one request starts it; Elasticsearch's refusal of a taken snapshot name decides between them.
func TestIntegrationReplicasRace(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("race")
	a, b := startSidecar(t, es.sidecarEnv(repo)), startSidecar(t, es.sidecarEnv(repo))
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		sc := a
		if i%2 == 1 {
			sc = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := sc.call("POST", "/actuator/backups", `{"backupId": 55}`)
			mu.Lock()
			codes[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if diff := cmp.Diff(map[int]int{202: 1, 409: 19}, codes); diff != "" {
		t.Errorf("status counts (-want +got):\n%s", diff)
	}
	a.waitState("55", stateCompleted)
	if got := b.state("55"); got != stateCompleted {
		t.Errorf("the other replica: got %s; want COMPLETED", got)
	}
}

// TestIntegrationListAndDelete creates backups 1, 12 and 3, lists them newest first with their
// states, deletes 1 with the admin token, and checks that 12 (whose ID starts like 1's) keeps
// both snapshots and the list shows the rest.
func TestIntegrationListAndDelete(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("catalogue")
	sc := startSidecar(t, es.sidecarEnv(repo))
	for _, id := range []string{"1", "12", "3"} {
		if status, body := sc.call("POST", "/actuator/backups", `{"backupId": `+id+`}`); status != 202 {
			t.Fatalf("create %s: got %d %s", id, status, body)
		}
		sc.waitState(id, stateCompleted)
	}
	// A snapshot that is not an Optimize backup stays out of the list and is never deleted.
	es.must("PUT", "/_snapshot/"+repo+"/nightly?wait_for_completion=true", `{"indices":"unrelated-logs","include_global_state":false}`)

	list := func() []string {
		status, body, infos := sc.infos("/actuator/backups")
		if status != 200 {
			t.Fatalf("list: got %d %s", status, body)
		}
		var out []string
		for _, i := range infos {
			out = append(out, fmt.Sprintf("%s %s %d", i.BackupID, i.State, len(i.Details)))
		}
		return out
	}
	if diff := cmp.Diff([]string{"3 COMPLETED 2", "12 COMPLETED 2", "1 COMPLETED 2"}, list()); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	if status, body := httpDo(t, "DELETE", sc.url+"/actuator/backups/1", "", nil); status != 401 {
		t.Errorf("delete without token: got %d %s; want 401", status, body)
	}
	if status, body := sc.call("DELETE", "/actuator/backups/1", ""); status != 204 {
		t.Fatalf("delete: got %d %s; want 204", status, body)
	}
	if got := len(es.snapshots(repo, "camunda_optimize_12_*")); got != 2 {
		t.Errorf("backup 12 after deleting 1: got %d snapshots; want 2", got)
	}
	if got := len(es.snapshots(repo, "nightly")); got != 1 {
		t.Errorf("foreign snapshot after delete: got %d; want 1", got)
	}
	if diff := cmp.Diff([]string{"3 COMPLETED 2", "12 COMPLETED 2"}, list()); diff != "" {
		t.Errorf("list after delete (-want +got):\n%s", diff)
	}
	if status, _ := sc.call("DELETE", "/actuator/backups/1", ""); status != 404 {
		t.Errorf("delete again: got %d; want 404", status)
	}
}
