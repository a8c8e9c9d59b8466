package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestOptimizeStoppedProbe checks that only a refused connection counts as "Optimize is
// stopped": an endpoint that accepts and never answers, a TLS failure, a name that does not
// resolve and any HTTP answer all refuse the restore.
func TestOptimizeStoppedProbe(t *testing.T) {
	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()
	answers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	t.Cleanup(answers.Close)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() }) // accepted, never answered
		}
	}()
	for _, tc := range []struct {
		name, url string
		stopped   bool
		says      string
	}{
		{"connection refused", refused.URL + "/api/readyz", true, "Nothing listens"},
		{"any answer, even 503", answers.URL + "/api/readyz", false, "Optimize answers"},
		{"accepts but never answers", "http://" + silent.Addr().String() + "/api/readyz", false, "Cannot confirm"},
		{"TLS handshake fails", strings.Replace(answers.URL, "http://", "https://", 1) + "/api/readyz", false, "Cannot confirm"},
		{"name does not resolve", "http://optimize.invalid/api/readyz", false, "Cannot confirm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig("http://127.0.0.1:1")
			cfg.OptimizeHealthURL = tc.url
			srv := newTestServer(t, cfg)
			stopped, detail := srv.optimizeStopped(context.Background())
			if stopped != tc.stopped || !strings.Contains(detail, tc.says) {
				t.Errorf("got stopped %t (%s); want %t saying %q", stopped, detail, tc.stopped, tc.says)
			}
		})
	}
}

// TestMetricsLabelsBounded sends 200 requests with distinct made-up 2 KB methods: they are
// counted under method "other", so the metrics page does not grow with them.
func TestMetricsLabelsBounded(t *testing.T) {
	srv := newTestServer(t, testConfig("http://127.0.0.1:1"))
	for i := 0; i < 200; i++ {
		serve(t, srv, fmt.Sprintf("X%04d%s", i, strings.Repeat("M", 2000)), "/actuator/backups", "", nil)
	}
	requests := scrape(t, srv)["optimize_backup_http_requests_total"]
	var methods []string
	for _, m := range requests.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" {
				methods = append(methods, l.GetValue())
			}
		}
	}
	if !slices.Equal(methods, []string{"other"}) {
		t.Errorf("got request counts by method %q; want made-up methods counted as other, once", methods)
	}
}

// TestAnswerTooLarge checks that an Elasticsearch answer over the size cap is not read whole
// and gives a clear error.
func TestAnswerTooLarge(t *testing.T) {
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"snapshots":[`))
		chunk := []byte(strings.Repeat(`{"snapshot":"x"},`, 4096))
		for written := 0; written <= maxAnswerBytes; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(huge.Close)
	srv := newTestServer(t, testConfig(huge.URL))
	res := serve(t, srv, "GET", "/actuator/backups/1", "", nil)
	if res.Code != 500 || !strings.Contains(res.Body.String(), "larger than the sidecar reads") {
		t.Errorf("got %d %s; want 500 saying the answer is too large", res.Code, res.Body)
	}
}

// TestServerLimits starts the sidecar as main does and checks that a request with 20 KB of
// headers is refused (MaxHeaderBytes), not held in memory.
func TestServerLimits(t *testing.T) {
	sc := startSidecar(t, map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": "http://127.0.0.1:1"})
	req, _ := http.NewRequest("GET", sc.url+"/actuator/health/liveness", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 20<<10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("got %d; want 431", res.StatusCode)
	}
}
