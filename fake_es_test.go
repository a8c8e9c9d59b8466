package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
)

// fakeES replays recorded Elasticsearch answers (testdata/es, see its README) through the real
// client. A route's recording can be a sequence "a|b": the first request gets a, every later
// one b (Elasticsearch's answer after the sidecar changed something). Routes are keyed "METHOD path" (plus "?after=cursor" for list pages); it records
// every request and fails the test on any request it was not told to expect.
type fakeES struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	routes   map[string]string
	served   map[string]int // requests served per key
	requests []string
	bodies   map[string][]string // request bodies by key, in order
}

// newFakeES starts a fake Elasticsearch answering routes (key -> recording name).
func newFakeES(t *testing.T, routes map[string]string) *fakeES {
	f := &fakeES{t: t, routes: routes, served: map[string]int{}, bodies: map[string][]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeES) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	if after := r.URL.Query().Get("after"); after != "" {
		key += "?after=" + after
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, key)
	if len(body) > 0 {
		f.bodies[key] = append(f.bodies[key], string(body))
	}
	name, ok := f.routes[key]
	if seq := strings.Split(name, "|"); ok && len(seq) > 1 {
		name = seq[min(f.served[key], len(seq)-1)]
	}
	f.served[key]++
	f.mu.Unlock()
	// The v8 client refuses answers that do not say they come from Elasticsearch.
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		f.t.Errorf("fake Elasticsearch got unexpected request %s", key)
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, `{"error":{"type":"unexpected_request","reason":"not expected by the test"},"status":418}`)
		return
	}
	rec := loadRecording(f.t, name)
	if msg := rec.mismatch(r); msg != "" {
		f.t.Errorf("fake Elasticsearch: %s answered with recording %s: %s (re-record it with make record, or fix the request)", key, name, msg)
	}
	w.WriteHeader(rec.Status)
	w.Write(rec.Body)
}

// sent returns the requests the fake has seen so far.
func (f *fakeES) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// bodiesOf returns the bodies sent with requests of this key, in order.
func (f *fakeES) bodiesOf(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies[key]...)
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
// version a compare-and-set expects): only their presence is compared.
var volatileParams = []string{"if_seq_no", "if_primary_term"}

// mismatch says how a request differs from the one the recording was made with, in method and
// (sorted) query string; "" if it does not. The path is the test's to choose (recordings come
// from their own repositories and IDs).
func (rec recording) mismatch(r *http.Request) string {
	method, target, _ := strings.Cut(rec.Request, " ")
	if method != r.Method {
		return fmt.Sprintf("method %s; recorded with %s", r.Method, method)
	}
	recorded, err := url.Parse(target)
	if err != nil {
		return fmt.Sprintf("recorded request %q does not parse: %v", rec.Request, err)
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

// loadRecording reads testdata/es/name.json.
func loadRecording(t *testing.T, name string) recording {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "es", name+".json"))
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

// testConfig is the configuration golden tests start from.
func testConfig(esURL string) config {
	return config{
		Repository:      "test-repo",
		ESURLs:          []string{esURL},
		IndexPrefix:     "optimize",
		ESTimeout:       5 * time.Second,
		PollInterval:    time.Millisecond,
		Part2Grace:      2 * time.Minute,
		ShutdownTimeout: 5 * time.Second,
		AdminToken:      "test-admin-token",
		JobsIndex:       "camunda-optimize-backup-jobs",

		RestoreWaitTimeout: time.Minute,
	}
}

// newTestServer builds a server on cfg whose client talks to cfg's Elasticsearch without
// retries (no test here is about retries) and logs into the test log.
func newTestServer(t testing.TB, cfg config) *server {
	t.Helper()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: cfg.ESURLs, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	s := newServer(cfg, esClients{read: es, write: es, restore: es}, log)
	s.now = func() time.Time { return testNow }
	return s
}

// envServer is a server configured from env as run configures one, with its real clients (a
// test's clock is the fixed testNow, as newTestServer's).
func envServer(t testing.TB, env map[string]string) *server {
	t.Helper()
	cfg, err := loadConfig(mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	clients, err := newESClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, cfg)
	srv.es = clients
	return srv
}

// testWriter sends log lines to t.Log, so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestEveryRecordingReplayed checks that each recording in testdata/es is served by some test
// (a recording nobody replays proves nothing, and rots), by looking for its name in the tests
// that are not recorders.
func TestEveryRecordingReplayed(t *testing.T) {
	files, _ := filepath.Glob("*_test.go")
	var tests strings.Builder
	for _, f := range files {
		if strings.HasPrefix(f, "record") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests.Write(b)
	}
	src := tests.String()
	recordings, _ := filepath.Glob(filepath.Join("testdata", "es", "*.json"))
	for _, path := range recordings {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		if strings.HasPrefix(name, "list-page-") {
			continue // listRoutes follows the pages by their cursors
		}
		if !strings.Contains(src, `"`+name+`"`) && !strings.Contains(src, `"`+name+`|`) && !strings.Contains(src, `|`+name+`"`) {
			t.Errorf("recording %s is replayed by no test; use it or stop recording it", name)
		}
	}
}
