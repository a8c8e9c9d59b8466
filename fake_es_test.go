package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeES replays recorded Elasticsearch answers (testdata/es, see its README) through the
// sidecar's production clients. A test gives it routes, "METHOD path" (plus "?after=cursor"
// for list pages) to the name of the recording that answers it. Every request must match a
// route by method and path, and the request the recording was made with by method, endpoint
// (the path with its repository, snapshot, index and document names set aside, see endpoint)
// and sorted query string; anything else fails the test. A route's recording can be a sequence
// "a|b": the first request gets a, every later one b (Elasticsearch's answer after the sidecar
// changed something). It records every request, with its body and the status it answered.
type fakeES struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	routes   map[string]string
	served   map[string]int // requests served per key
	requests []esRequest
	// docs are the documents the fake keeps as Elasticsearch would (see keepDocument): path
	// to the recording of a GET that found such a document, and the body last stored there.
	docs   map[string]string
	stored map[string][]byte
}

// esRequest is one request the fake got: its key ("METHOD path", as routes), its body and the
// status it was answered with.
type esRequest struct {
	key    string
	body   string
	status int
}

// newFakeES starts a fake Elasticsearch answering routes (key -> recording name).
func newFakeES(t *testing.T, routes map[string]string) *fakeES {
	f := &fakeES{t: t, routes: routes, served: map[string]int{}, docs: map[string]string{}, stored: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// keepDocument makes the fake hold the document at path as Elasticsearch does: once the
// sidecar stored it (a PUT to path answered 2xx), a GET of path answers the recording found (a
// real GET of such a document) with the stored body as its _source. Before that, the GET's
// route answers. So a test reads a job through the sidecar's own status route, whatever
// number of writes it took.
func (f *fakeES) keepDocument(path, found string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[path] = found
}

// document is the body last stored at path (nil if none), for a path given to keepDocument.
func (f *fakeES) document(path string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stored[path]
}

// serve answers one request with its recording, or fails the test (see fakeES).
func (f *fakeES) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	if after := r.URL.Query().Get("after"); after != "" {
		key += "?after=" + after
	}
	body, _ := io.ReadAll(r.Body)
	name, stored, ok := f.route(key, r)
	// The v8 client refuses answers that do not say they come from Elasticsearch; OpenSearch's
	// recordings (opensearch/...) are answered as OpenSearch answers, without the header.
	if !strings.HasPrefix(strings.TrimPrefix(name, misroutedMark), openSearchRecordings) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		f.t.Errorf("fake Elasticsearch got unexpected request %s", key)
		f.note(esRequest{key, string(body), http.StatusTeapot})
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, `{"error":{"type":"unexpected_request","reason":"not expected by the test"},"status":418}`)
		return
	}
	rec := loadRecording(f.t, strings.TrimPrefix(name, misroutedMark))
	if msg := rec.mismatch(r, strings.HasPrefix(name, misroutedMark)); msg != "" {
		f.t.Errorf("fake Elasticsearch: %s answered with recording %s: %s (re-record it with make record, or fix the request)", key, name, msg)
	} else {
		servedRecordings.Store(strings.TrimPrefix(name, misroutedMark), true)
	}
	if stored != nil {
		rec.Body = withSource(f.t, rec.Body, stored)
	}
	if r.Method == http.MethodPut && rec.Status/100 == 2 {
		f.store(r.URL.Path, body)
	}
	f.note(esRequest{key, string(body), rec.Status})
	w.WriteHeader(rec.Status)
	w.Write(rec.Body)
}

// route finds the recording that answers the request of this key: the kept document's
// recording and the document, or the route's recording (the next of a sequence).
func (f *fakeES) route(key string, r *http.Request) (name string, stored []byte, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if found, kept := f.docs[r.URL.Path]; kept && r.Method == http.MethodGet && f.stored[r.URL.Path] != nil {
		return found, f.stored[r.URL.Path], true
	}
	name, ok = f.routes[key]
	if seq := strings.Split(name, "|"); ok && len(seq) > 1 {
		name = seq[min(f.served[key], len(seq)-1)]
	}
	f.served[key]++
	return name, nil, ok
}

// store keeps body as the document at path, if path is one given to keepDocument.
func (f *fakeES) store(path string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, kept := f.docs[path]; kept {
		f.stored[path] = body
	}
}

// note records one request.
func (f *fakeES) note(req esRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
}

// withSource is a recorded answer of a GET of a document with source as its _source.
func withSource(t *testing.T, answer, source []byte) []byte {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(answer, &doc); err != nil {
		t.Errorf("recorded document answer %s: %v", answer, err)
		return answer
	}
	doc["_source"] = source
	out, err := json.Marshal(doc)
	if err != nil {
		t.Errorf("document answer: %v", err)
	}
	return out
}

// misroutedMark, before a route's recording name, serves that recording on purpose at
// another endpoint than it was recorded at (what a proxy in front of the wrong service
// answers): only its method and query are compared.
const misroutedMark = "misrouted:"

// misrouted is a route's recording served on purpose at another endpoint (see misroutedMark).
func misrouted(name string) string { return misroutedMark + name }

// servedRecordings are the recordings some fake served during this run (name -> true), for
// TestMain's check that every recording is.
var servedRecordings sync.Map

// recordingsNotServed lists the recordings in testdata/es and testdata/opensearch that no fake
// served, sorted.
func recordingsNotServed() []string {
	files, _ := filepath.Glob(filepath.Join("testdata", "es", "*.json"))
	openSearch, _ := filepath.Glob(filepath.Join("testdata", "opensearch", "*.json"))
	files = append(files, openSearch...)
	var missing []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if filepath.Base(filepath.Dir(f)) == "opensearch" {
			name = openSearchRecordings + name
		}
		if _, ok := servedRecordings.Load(name); !ok {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return missing
}

// sent returns the keys of the requests the fake has seen so far, in order.
func (f *fakeES) sent() []string {
	var keys []string
	for _, r := range f.received() {
		keys = append(keys, r.key)
	}
	return keys
}

// received returns the requests the fake has seen so far, in order.
func (f *fakeES) received() []esRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// bodiesOf returns the bodies sent with requests of this key, in order.
func (f *fakeES) bodiesOf(key string) []string {
	var out []string
	for _, r := range f.received() {
		if r.key == key && r.body != "" {
			out = append(out, r.body)
		}
	}
	return out
}

// mutations returns the requests that could have changed something in Elasticsearch (other
// than the delete marks, which a refused DELETE takes back).
func (f *fakeES) mutations() []string {
	var out []string
	for _, r := range f.sent() {
		// A DELETE's mark in the jobs index is bookkeeping, taken back when it is refused.
		bookkeeping := strings.Contains(r, "/_doc/deleting-") || r == "PUT /camunda-optimize-backup-jobs"
		if !strings.HasPrefix(r, "GET ") && !bookkeeping {
			out = append(out, r)
		}
	}
	return out
}

// volatileParams are query parameters whose values a test cannot know before it runs (the
// version a compare-and-set expects) or that the recorder set to its own (master_timeout, the
// sidecar's Elasticsearch deadline): only their presence is compared.
var volatileParams = []string{"if_seq_no", "if_primary_term", "master_timeout", "cluster_manager_timeout"}

// mismatch says how a request differs from the one the recording was made with, in method,
// endpoint and (sorted) query string; "" if it does not. Names in the path are the test's to
// choose (recordings come from their own repositories and IDs); anyEndpoint skips the endpoint
// (a recording served on purpose where it was not recorded, see misrouted).
func (rec recording) mismatch(r *http.Request, anyEndpoint bool) string {
	method, target, _ := strings.Cut(rec.Request, " ")
	if method != r.Method {
		return fmt.Sprintf("method %s; recorded with %s", r.Method, method)
	}
	recorded, err := url.Parse(target)
	if err != nil {
		return fmt.Sprintf("recorded request %q does not parse: %v", rec.Request, err)
	}
	if got, want := endpoint(r.URL.Path), endpoint(recorded.Path); got != want && !anyEndpoint {
		return fmt.Sprintf("endpoint %s; recorded at %s", got, want)
	}
	got, want := r.URL.Query(), recorded.Query()
	for _, p := range volatileParams {
		if got.Has(p) && want.Has(p) {
			got.Set(p, "*")
			want.Set(p, "*")
		}
	}
	if got.Encode() != want.Encode() {
		return fmt.Sprintf("query %q; recorded with %q", got.Encode(), want.Encode())
	}
	return ""
}

// endpoint is the Elasticsearch API a path calls: the path with every name (of a repository,
// snapshot, index or document) replaced by {name}. Elasticsearch's own words start with "_"
// (an index or repository name cannot), and so do the words after _resolve, _cluster and
// _settings ("index", "health", the names of settings) that are kept as they are.
func endpoint(path string) string {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, seg := range segs {
		fixed := strings.HasPrefix(seg, "_") || i > 0 && slices.Contains([]string{"_resolve", "_cluster", "_settings"}, segs[i-1])
		if !fixed {
			segs[i] = "{name}"
		}
	}
	return "/" + strings.Join(segs, "/")
}

// openSearchRecordings starts the name of a recording made on OpenSearch: opensearch/x is
// testdata/opensearch/x.json (see its README).
const openSearchRecordings = "opensearch/"

// loadRecording reads testdata/es/name.json, or testdata/opensearch/x.json for opensearch/x.
func loadRecording(t *testing.T, name string) recording {
	t.Helper()
	file := filepath.Join("testdata", "es", name+".json")
	if rest, ok := strings.CutPrefix(name, openSearchRecordings); ok {
		file = filepath.Join("testdata", "opensearch", rest+".json")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("recording %s: %v", name, err)
	}
	var rec recording
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("recording %s: %v", name, err)
	}
	return rec
}

// testNow is the clock of golden tests: well after every recording, so lone part 1s are past
// their grace period unless a test moves it.
var testNow = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

// testConfig is the configuration golden tests start from, read by loadConfig as run reads
// it: Elasticsearch at esURL, short timeouts and polls.
func testConfig(esURL string) config {
	cfg, err := loadConfig(mapEnv(map[string]string{
		"OPTIMIZE_ELASTICSEARCH_URLS":             esURL,
		"CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "test-repo",
		"OPTIMIZE_BACKUP_ADMIN_TOKEN":             "test-admin-token",
		"OPTIMIZE_BACKUP_ELASTICSEARCH_TIMEOUT":   "5s",
		"OPTIMIZE_BACKUP_POLL_INTERVAL":           "1ms",
		"OPTIMIZE_BACKUP_SHUTDOWN_TIMEOUT":        "5s",
		"OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT":    "1m",
	}))
	if err != nil {
		panic("the golden tests' configuration: " + err.Error())
	}
	return cfg
}

// newTestServer builds a server on cfg with the clients run builds (newESClients), logging
// into the test log; its clock is the fixed testNow.
func newTestServer(t testing.TB, cfg config) *server {
	t.Helper()
	clients, err := newESClients(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	s := newServer(cfg, clients, log)
	s.now = func() time.Time { return testNow }
	return s
}

// envServer is a server configured from env as run configures one (a test's clock is the
// fixed testNow, as newTestServer's).
func envServer(t testing.TB, env map[string]string) *server {
	t.Helper()
	cfg, err := loadConfig(mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	return newTestServer(t, cfg)
}

// testWriter sends log lines to t.Log, so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
