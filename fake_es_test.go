package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

// mutations returns the requests that could have changed something in Elasticsearch.
func (f *fakeES) mutations() []string {
	var out []string
	for _, r := range f.sent() {
		if !strings.HasPrefix(r, "GET ") {
			out = append(out, r)
		}
	}
	return out
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
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: cfg.esAddresses(), DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	s := newServer(cfg, esClients{read: es, write: es, restore: es}, log)
	s.now = func() time.Time { return testNow }
	return s
}

// testWriter sends log lines to t.Log, so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
