package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The design targets (SPEC and the brief) are measured here and printed, never asserted:
// machines are noisy. make bench runs these against the real node of testenv/with-es.sh.

// BenchmarkGetBackup compares one GET of a backup through the sidecar with the one
// Elasticsearch request it makes, and reports the sidecar's overhead in percent.
func BenchmarkGetBackup(b *testing.B) {
	esURL := os.Getenv("OPTIMIZE_BACKUP_TEST_ES_URL")
	if esURL == "" {
		b.Skip("needs the real Elasticsearch (make bench)")
	}
	es := realES{t: b, url: esURL}
	repo := "bench-get"
	es.must("PUT", "/_snapshot/"+repo, fmt.Sprintf(`{"type":"fs","settings":{"location":%q}}`, filepath.Join(os.Getenv("OPTIMIZE_BACKUP_TEST_ES_RUN_DIR"), "repo", "bench-get")))
	for part := 1; part <= 2; part++ {
		// Benchmarks run more than once: the snapshots may exist already.
		es.do("PUT", fmt.Sprintf("/_snapshot/%s/camunda_optimize_1_3.9.0_part_%d_of_2?wait_for_completion=true", repo, part), `{"indices":"optimize-import-index_v3","include_global_state":false}`)
	}
	cfg := testConfig(esURL)
	cfg.Repository = repo
	srv := newTestServer(b, cfg)
	sidecar := httptest.NewServer(srv.routes())
	defer sidecar.Close()

	direct := esURL + "/_snapshot/" + repo + "/camunda_optimize_1_*" + snapshotQuery(0, "")
	via := sidecar.URL + "/actuator/backups/1"
	get := func(url string) {
		res, err := http.Get(url)
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("GET %s: %v %v", url, res, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	// Alternate the two, so both see the same machine load.
	var directTime, viaTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		get(direct)
		directTime += time.Since(start)
		start = time.Now()
		get(via)
		viaTime += time.Since(start)
	}
	b.ReportMetric(float64(directTime.Microseconds())/float64(b.N), "µs/direct-es")
	b.ReportMetric(float64(viaTime.Microseconds())/float64(b.N), "µs/via-sidecar")
	b.ReportMetric(100*float64(viaTime-directTime)/float64(directTime), "%overhead")
}

// BenchmarkList10000 lists 10,000 backups (20,000 snapshots) that a fake Elasticsearch serves
// in pages of 1,000 shaped like the recorded answers (list-page-*.json): the sidecar's own cost of listing.
func BenchmarkList10000(b *testing.B) {
	const backups, page = 10000, defaultListPageSize
	var snaps []map[string]any
	start := int64(1795500000000)
	for i := backups; i >= 1; i-- {
		for part := 2; part >= 1; part-- {
			t := start + int64(i)*10000 + int64(part)*1000
			snaps = append(snaps, map[string]any{
				"snapshot": fmt.Sprintf("camunda_optimize_%d_3.9.0_part_%d_of_2", i, part), "state": "SUCCESS",
				"start_time_in_millis": t, "end_time_in_millis": t + 500, "failures": []any{},
			}) // the fields of listFields, as filter_path leaves them

		}
	}
	pages := map[string][]byte{}
	for offset := 0; offset < len(snaps); offset += page {
		body := map[string]any{"snapshots": snaps[offset:min(offset+page, len(snaps))]}
		if offset+page < len(snaps) {
			body["next"] = strconv.Itoa(offset + page)
		}
		pages[strconv.Itoa(offset)], _ = json.Marshal(body)
	}
	requests := 0
	var mu sync.Mutex
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		after := r.URL.Query().Get("after")
		if after == "" {
			after = "0"
		}
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.Write(pages[after])
	}))
	defer es.Close()
	srv := newTestServer(b, testConfig(es.URL))
	handler := srv.routes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res := httptest.NewRecorder()
		handler.ServeHTTP(res, httptest.NewRequest("GET", "/actuator/backups", nil))
		if res.Code != 200 || !bytes.HasPrefix(res.Body.Bytes(), []byte(`[{"backupId":10000,`)) {
			b.Fatalf("got %d %.200s", res.Code, res.Body)
		}
	}
	b.ReportMetric(float64(requests)/float64(b.N), "es-requests/op")
}

// BenchmarkProcess starts the static binary as a process against the real node and reports
// the time from exec to serving, the resident memory idle, and the peak resident memory while
// 64 clients GET a backup concurrently.
func BenchmarkProcess(b *testing.B) {
	esURL := os.Getenv("OPTIMIZE_BACKUP_TEST_ES_URL")
	binary, _ := filepath.Abs("optimize-backup")
	if esURL == "" {
		b.Skip("needs the real Elasticsearch (make bench)")
	}
	if _, err := os.Stat(binary); err != nil {
		b.Skip("needs the static binary: make build")
	}
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(binary)
		cmd.Env = []string{"OPTIMIZE_ELASTICSEARCH_URLS=" + esURL, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME=bench-get", "MANAGEMENT_SERVER_PORT=18092"}
		out, _ := cmd.StdoutPipe()
		started := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		scanner := bufio.NewScanner(out)
		for scanner.Scan() && !strings.Contains(scanner.Text(), `"serving"`) {
		}
		// Serving means answering: wait for the first answer.
		for {
			if res, err := http.Get("http://127.0.0.1:18092/actuator/health/liveness"); err == nil {
				res.Body.Close()
				break
			}
			time.Sleep(time.Millisecond)
		}
		startup := time.Since(started)
		go io.Copy(io.Discard, out)
		time.Sleep(500 * time.Millisecond)
		idle := rssKiB(b, cmd.Process.Pid, "VmRSS")

		var wg sync.WaitGroup
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		for c := 0; c < 64; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < 50; r++ {
					if res, err := client.Get("http://127.0.0.1:18092/actuator/backups/1"); err == nil {
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
				}
			}()
		}
		wg.Wait()
		peak := rssKiB(b, cmd.Process.Pid, "VmHWM")
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		b.ReportMetric(float64(startup.Microseconds())/1000, "ms-to-serving")
		b.ReportMetric(float64(idle)/1024, "MiB-rss-idle")
		b.ReportMetric(float64(peak)/1024, "MiB-rss-peak-64-clients")
	}
}

// rssKiB reads a memory figure of a process from /proc.
func rssKiB(b *testing.B, pid int, field string) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, field+":") {
			kib, _ := strconv.Atoi(strings.Fields(line)[1])
			return kib
		}
	}
	return 0
}
