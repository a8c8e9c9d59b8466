package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape gets /actuator/prometheus through the router and parses it with client_golang's own
// text parser, failing the test on a page the parser refuses.
func scrape(t *testing.T, srv *server) map[string]*dto.MetricFamily {
	t.Helper()
	res := serve(t, srv, "GET", "/actuator/prometheus", "", nil)
	if res.Code != 200 || !strings.HasPrefix(res.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("got %d %q; want 200 in the text format", res.Code, res.Header().Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(res.Body.String()))
	if err != nil {
		t.Fatalf("the page does not parse: %v\n%s", err, res.Body)
	}
	return families
}

// gauges returns the values of one family by the value of one label ("" for none).
func gauges(families map[string]*dto.MetricFamily, name, label string) map[string]float64 {
	out := map[string]float64{}
	f := families[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		key := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		switch {
		case m.Gauge != nil:
			out[key] = m.GetGauge().GetValue()
		case m.Counter != nil:
			out[key] = m.GetCounter().GetValue()
		}
	}
	return out
}

// TestPrometheusRepositoryMetrics checks the repository metrics on the recorded repository
// (catalogueBackups): backups of this installation by state (optimize-east's backup 5 is left
// out, Optimize's own backup 21 is this installation's by its indices), the last success, the
// standard go_* and process_* metrics; and that a second scrape, with every snapshot known,
// reads only the catalogue and the drill document: no snapshot's details.
func TestPrometheusRepositoryMetrics(t *testing.T) {
	routes := catalogueRoutes()
	routes[getDrill] = "drill-found-passed"
	fake := newFakeES(t, routes)
	srv := newTestServer(t, testConfig(fake.srv.URL))
	first := scrape(t, srv)
	want := map[string]float64{stateCompleted: 3, stateInProgress: 0, stateFailed: 0, stateIncomplete: 1, stateIncompatible: 0}
	if diff := gocmp.Diff(want, gauges(first, "optimize_backup_backups", "state")); diff != "" {
		t.Errorf("optimize_backup_backups (-want +got):\n%s", diff)
	}
	// Backup 10's part 2 ended last.
	lastEnd := recordedSnapshot(t, "catalogue-facts", snapshotName("10", "3.9.0", 2)).EndMillis
	for name, want := range map[string]float64{
		"optimize_backup_repository_up":                       1,
		"optimize_backup_last_success_timestamp_seconds":      float64(lastEnd / 1000),
		"optimize_backup_last_verification_success":           1,
		"optimize_backup_last_verification_timestamp_seconds": 1795662060,
	} {
		if got := gauges(first, name, "")[""]; got != want {
			t.Errorf("%s: got %v; want %v", name, got, want)
		}
	}
	if got := gauges(first, "optimize_backup_last_verification_info", "backup_id"); got["12"] != 1 {
		t.Errorf("optimize_backup_last_verification_info: got %v; want backup_id 12", got)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if first[name] == nil {
			t.Errorf("got no %s; want the standard go_* and process_* metrics", name)
		}
	}
	before := len(fake.sent())
	second := scrape(t, srv)
	if diff := gocmp.Diff([]string{listAll, getDrill}, fake.sent()[before:]); diff != "" {
		t.Errorf("second scrape's Elasticsearch requests (-want +got):\n%s", diff)
	}
	if diff := gocmp.Diff(want, gauges(second, "optimize_backup_backups", "state")); diff != "" {
		t.Errorf("second scrape: optimize_backup_backups (-want +got):\n%s", diff)
	}
}

// TestPrometheusRepositoryDown checks that a repository that cannot be read is reported as
// optimize_backup_repository_up 0, without backup counts, and an empty one with counts of 0.
func TestPrometheusRepositoryDown(t *testing.T) {
	for recording, want := range map[string]float64{"catalogue-missing-repo": 0, "catalogue-empty": 1} {
		fake := newFakeES(t, map[string]string{listAll: recording, getDrill: "job-none"})
		srv := newTestServer(t, testConfig(fake.srv.URL))
		page := scrape(t, srv)
		if got := gauges(page, "optimize_backup_repository_up", "")[""]; got != want {
			t.Errorf("%s: got optimize_backup_repository_up %v; want %v", recording, got, want)
		}
		if counts := gauges(page, "optimize_backup_backups", "state"); want == 0 && counts != nil || want == 1 && counts[stateCompleted] != 0 {
			t.Errorf("%s: got optimize_backup_backups %v", recording, counts)
		}
	}
}

// TestConcurrentScrapesShareOneRead sends 20 scrapes at once (many Prometheus servers): they
// share the repository's read, so Elasticsearch sees at most two catalogue reads (the one
// under way when a scrape arrives, and the one after it), not 20.
func TestConcurrentScrapesShareOneRead(t *testing.T) {
	var catalogues atomic.Int32
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if r.URL.Query().Get("verbose") == "false" {
			catalogues.Add(1)
			time.Sleep(300 * time.Millisecond) // a slow repository: the scrapes arrive meanwhile
			w.Write([]byte(`{"snapshots":[]}`))
			return
		}
		w.WriteHeader(http.StatusNotFound) // the drill document: none
		w.Write([]byte(`{"found":false}`))
	}))
	defer fake.Close()
	srv := newTestServer(t, testConfig(fake.URL))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			// Not scrape: it may end the test, which only the test's goroutine may do.
			if body := serve(t, srv, "GET", "/actuator/prometheus", "", nil).Body.String(); !strings.Contains(body, "\noptimize_backup_repository_up 1\n") {
				t.Errorf("got a page without optimize_backup_repository_up 1:\n%s", body)
			}
		})
	}
	wg.Wait()
	if n := catalogues.Load(); n > 2 {
		t.Errorf("got %d catalogue reads for 20 concurrent scrapes; want at most 2", n)
	}
}

// recordedSnapshot is the snapshot of this name in a recorded get-snapshots answer.
func recordedSnapshot(t *testing.T, recording, name string) snapshot {
	t.Helper()
	var answer getSnapshotsAnswer
	if err := json.Unmarshal(loadRecording(t, recording).Body, &answer); err != nil {
		t.Fatalf("recording %s: %v", recording, err)
	}
	for _, sn := range answer.Snapshots {
		if sn.Name == name {
			return sn
		}
	}
	t.Fatalf("recording %s holds no snapshot %s", recording, name)
	return snapshot{}
}
