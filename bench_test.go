//go:build bench

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The design targets of issue 13, measured against the real Elasticsearch that make bench
// starts (testenv/with-es.sh, port 9230): every sidecar figure alternately with its
// direct-Elasticsearch counterpart, so both see the same machine load. Figures are printed and
// written to BENCHMARKS.md (between the markers below), never asserted: machines are noisy.
//
//	make bench                                  # a fresh node, the whole run, BENCHMARKS.md
//	OPTIMIZE_BACKUP_TEST_ES_URL=... OPTIMIZE_BACKUP_TEST_ES_RUN_DIR=... \
//	  go test -tags bench -run TestBench -timeout 20m -v .   # against a running node
//
// BENCH_ONLY=get,list,backup,process,tasks runs a subset (development); BENCH_DATA_MB sets the
// data the backup and restore figures are taken on (default 200); BENCH_OUT the file.

// benchRounds is how many times each pair of figures is taken, sidecar and direct in turn.
const benchRounds = 3

// getRounds is how many times each pair of GET figures is taken, each side for getRound: short
// turns, so that both sides see the same moments of a shared machine (3 turns of 2 s each moved
// the one-client figure by 0.1 ms between runs).
const (
	getRounds = 8
	getRound  = 750 * time.Millisecond
)

// benchMarkers delimit the part of BENCHMARKS.md that each run rewrites; the rest (what was
// changed, before and after) is kept.
const (
	benchBegin = "<!-- make bench: begin (generated, do not edit by hand) -->"
	benchEnd   = "<!-- make bench: end -->"
)

// bench is one run: the node, the sidecar binary and the report being built.
type bench struct {
	t      *testing.T
	es     realES
	binary string
	// client sends every measured request, direct or through the sidecar alike: no gzip
	// (the sidecar asks Elasticsearch for none either) and enough idle connections for 64
	// clients, so connection setup is not measured.
	client *http.Client
	report strings.Builder
}

// TestBench runs every benchmark and writes BENCHMARKS.md.
func TestBench(t *testing.T) {
	url, runDir := os.Getenv("OPTIMIZE_BACKUP_TEST_ES_URL"), os.Getenv("OPTIMIZE_BACKUP_TEST_ES_RUN_DIR")
	if url == "" || runDir == "" {
		t.Skip("needs the real Elasticsearch: make bench")
	}
	binary, _ := filepath.Abs("optimize-backup")
	if _, err := os.Stat(binary); err != nil {
		t.Fatal("needs the static binary: make build (make bench builds it)")
	}
	b := &bench{t: t, es: realES{t: t, url: url, runDir: runDir}, binary: binary,
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}}}
	started := time.Now()
	b.header()
	only := os.Getenv("BENCH_ONLY")
	run := func(name string, f func()) {
		if only == "" || slices.Contains(strings.Split(only, ","), name) {
			t.Logf("bench: %s", name)
			f()
		}
	}
	run("get", b.getLatency)
	run("process", b.process)
	run("backup", b.backupAndRestore)
	run("list", b.growth)
	run("tasks", b.taskCosts)
	fmt.Fprintf(&b.report, "\nThe whole run took %s.\n", time.Since(started).Round(time.Second))
	fmt.Println(b.report.String())
	b.write()
}

// header records the machine, the date and the Elasticsearch version.
func (b *bench) header() {
	// GET / is not served by the test distribution (no rest-root module): ask the node.
	var nodes struct {
		Nodes map[string]struct{ Version string } `json:"nodes"`
	}
	json.Unmarshal(b.es.must("GET", "/_nodes/_local?filter_path=nodes.*.version", ""), &nodes)
	version := "unknown"
	for _, n := range nodes.Nodes {
		version = n.Version
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	model := "unknown"
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			break
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	product := map[string]string{databaseElasticsearch: "Elasticsearch", databaseOpenSearch: "OpenSearch"}[testDB()]
	fmt.Fprintf(&b.report, "Run %s UTC on %d CPUs (%s), %s of memory; %s %s (one node, run dir %s), %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04"), runtime.NumCPU(), model, memTotal(), product, version, b.es.runDir, runtime.Version())
	fmt.Fprintf(&b.report, "Load average when the run started: %s (other people share this machine's CPUs: figures move between runs).\n",
		strings.Join(strings.Fields(string(load))[:3], " "))
}

// memTotal is the machine's memory as /proc/meminfo reports it.
func memTotal() string {
	meminfo, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(meminfo), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kib, _ := strconv.Atoi(f[1])
			return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
		}
	}
	return "unknown"
}

// write puts the report between the markers of BENCHMARKS.md, keeping the rest of the file.
func (b *bench) write() {
	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = "docs/BENCHMARKS.md"
	}
	old, _ := os.ReadFile(out)
	before, after := "# Benchmarks\n\n", "\n"
	if i, j := strings.Index(string(old), benchBegin), strings.Index(string(old), benchEnd); i >= 0 && j > i {
		before, after = string(old[:i]), string(old[j+len(benchEnd):])
	}
	text := before + benchBegin + "\n" + b.report.String() + benchEnd + after
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("bench: wrote %s", out)
}

// verdict is PASS or MISS for a figure against its goal.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// --- helpers: repositories, the sidecar process, requests ---

// repo registers a fresh fs repository under the node's path.repo and returns a function that
// unregisters it and removes its directory.
func (b *bench) repo(name string) (cleanup func()) {
	location := filepath.Join(b.es.runDir, "repo", name)
	os.RemoveAll(location)
	b.es.must("PUT", "/_snapshot/"+name, fmt.Sprintf(`{"type":"fs","settings":{"location":%q}}`, location))
	return func() {
		b.es.do("DELETE", "/_snapshot/"+name, "")
		if err := os.RemoveAll(location); err != nil {
			b.t.Errorf("removing repository %s: %v", location, err)
		}
	}
}

// sidecarProc is the static binary, started as an operator would start it.
type sidecarProc struct {
	cmd     *exec.Cmd
	url     string
	startup time.Duration // from exec to the first answer
}

// benchToken is the admin token of the sidecars the benchmarks start.
const benchToken = "bench-admin-token-0123456789"

// startSidecar starts the binary for one repository on a free port and waits until it answers.
func (b *bench) startSidecar(repo string) *sidecarProc {
	cmd := exec.Command(b.binary)
	for k, v := range forTestDB(map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": b.es.url, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": repo,
		"MANAGEMENT_SERVER_PORT": "0", "OPTIMIZE_BACKUP_ADMIN_TOKEN": benchToken}) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	scanner := bufio.NewScanner(out)
	var addr string
	for addr == "" && scanner.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(scanner.Bytes(), &line) == nil && line.Msg == "serving" {
			addr = line.Addr
		}
	}
	if addr == "" {
		b.t.Fatal("the sidecar stopped before serving")
	}
	go io.Copy(io.Discard, out)
	p := &sidecarProc{cmd: cmd, url: "http://" + addr}
	for {
		if res, err := http.Get(p.url + "/actuator/health/liveness"); err == nil {
			res.Body.Close()
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	p.startup = time.Since(started)
	return p
}

// stop stops the sidecar as an orchestrator would and waits for it to exit.
func (p *sidecarProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

// call sends one request with the bench client and returns status and body.
func (b *bench) call(method, url, body string) (int, []byte) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if !strings.HasPrefix(url, b.es.url) {
		req.Header.Set("Authorization", "Bearer "+benchToken)
	}
	res, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

// capturedQuery returns the path and query of the first Elasticsearch request the sidecar
// makes to answer GET path, on a sidecar whose client goes nowhere: the direct counterpart of
// a sidecar figure sends exactly the request the sidecar sends.
func capturedQuery(t *testing.T, repo, path string) string {
	var first atomic.Value
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first.CompareAndSwap(nil, r.URL.RequestURI())
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		io.WriteString(w, `{"snapshots":[]}`)
	}))
	defer fake.Close()
	cfg := testConfig(fake.URL)
	cfg.Repository = repo
	srv := newTestServer(t, cfg)
	srv.log = slog.New(slog.DiscardHandler)
	srv.routes().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	return first.Load().(string)
}

// directListQuery is the one request that lists every Optimize snapshot of repo with the list's
// fields, as a client asking Elasticsearch directly would: each snapshot loaded once.
func directListQuery(repo string) string {
	return "/_snapshot/" + repo + "/camunda_optimize_*?" + url.Values{"filter_path": {strings.Join(listFields, ",")}}.Encode()
}

// --- GET one backup under load ---

// latencies runs clients closed-loop clients GETting url for d (after a short warm-up) and
// returns every request's latency.
func (b *bench) latencies(url string, clients int, d time.Duration) []time.Duration {
	return b.latenciesEach(func(int) string { return url }, clients, d)
}

// latenciesEach is latencies with client c GETting urlOf(c).
func (b *bench) latenciesEach(urlOf func(client int) string, clients int, d time.Duration) []time.Duration {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	warm := time.Now().Add(300 * time.Millisecond)
	end := warm.Add(d)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		url := urlOf(c)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				start := time.Now()
				if start.After(end) {
					break
				}
				res, err := b.client.Get(url)
				if err != nil {
					b.t.Errorf("GET %s: %v", url, err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					b.t.Errorf("GET %s: %d", url, res.StatusCode)
					return
				}
				if start.After(warm) {
					mine = append(mine, time.Since(start))
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all
}

// percentile is the p-th percentile (0-100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p/100*float64(len(s))))]
}

// pairedLatencies measures GET via the sidecar and direct alternately, rounds times, and
// returns both pooled.
func (b *bench) pairedLatencies(via, direct string, clients int, d time.Duration) (v, dir []time.Duration) {
	return b.pairedLatenciesEach(func(int) string { return via }, func(int) string { return direct }, clients, d)
}

// pairedLatenciesEach is pairedLatencies with client c GETting via(c) and direct(c).
func (b *bench) pairedLatenciesEach(via, direct func(client int) string, clients int, d time.Duration) (v, dir []time.Duration) {
	for round := 0; round < getRounds; round++ {
		// Each round in the other order, so that neither always runs on a warmer machine.
		if round%2 == 0 {
			dir = append(dir, b.latenciesEach(direct, clients, d)...)
			v = append(v, b.latenciesEach(via, clients, d)...)
		} else {
			v = append(v, b.latenciesEach(via, clients, d)...)
			dir = append(dir, b.latenciesEach(direct, clients, d)...)
		}
	}
	return v, dir
}

// getLatency measures GET one backup at 1, 16 and 64 clients against the same get-snapshots
// request sent directly.
func (b *bench) getLatency() {
	defer b.repo("bench-get")()
	sc := b.startSidecar("bench-get")
	defer sc.stop()
	b.backupVia(sc, "1")
	via := sc.url + "/actuator/backups/1"
	direct := b.es.url + capturedQuery(b.t, "bench-get", "/actuator/backups/1")

	fmt.Fprintf(&b.report, "\n## GET one backup under load\n\nA completed backup made by the sidecar (part 2 lists %d indices). Direct: `GET %s` (the request the sidecar sends), %d alternating rounds of %s per side, each after 0.3 s of warm-up, closed loop, no gzip either way.\n\n",
		len(b.es.snapshots("bench-get", "camunda_optimize_1_3.9.0_part_2_of_2")[0].Indices), strings.TrimPrefix(direct, b.es.url), getRounds, getRound)
	fmt.Fprintf(&b.report, "| clients | direct p50 / p99 ms | sidecar p50 / p99 ms | ratio p50 / p99 | goal | verdict |\n|---|---|---|---|---|---|\n")
	for _, clients := range []int{1, 16, 64} {
		v, d := b.pairedLatencies(via, direct, clients, getRound)
		vp50, vp99, dp50, dp99 := percentile(v, 50), percentile(v, 99), percentile(d, 50), percentile(d, 99)
		r50, r99 := float64(vp50)/float64(dp50), float64(vp99)/float64(dp99)
		goal, ok := "ratio ≤ 1.10 at p50 and p99", r50 <= 1.10 && r99 <= 1.10
		if clients == 1 {
			goal, ok = "p50 + ≤ 0.35 ms", vp50-dp50 <= 350*time.Microsecond
		}
		fmt.Fprintf(&b.report, "| %d | %s / %s | %s / %s | %.2f / %.2f | %s | %s |\n", clients, ms(dp50), ms(dp99), ms(vp50), ms(vp99), r50, r99, goal, verdict(ok))
	}
	b.getDistinctLatency(sc)
}

// getDistinctLatency measures 64 clients that each GET a backup of their own: no two GETs can
// share an Elasticsearch read, so this is what the sidecar's hop costs under load. Not a goal
// of issue 13 (which asks for one backup); reported so that the shared reads are not mistaken
// for a cheap hop.
func (b *bench) getDistinctLatency(sc *sidecarProc) {
	const clients = 64
	b.es.do("DELETE", "/bench-tiny", "")
	b.es.must("PUT", "/bench-tiny", `{"settings":{"number_of_shards":1,"number_of_replicas":0}}`)
	b.es.must("PUT", "/bench-tiny/_doc/1?refresh=true", `{"tiny":true}`)
	defer b.es.do("DELETE", "/bench-tiny", "")
	b.createBackups("bench-get", 1001, 1000+clients)
	id := func(c int) string { return strconv.Itoa(1001 + c) }
	via := func(c int) string { return sc.url + "/actuator/backups/" + id(c) }
	direct := func(c int) string {
		return b.es.url + capturedQuery(b.t, "bench-get", "/actuator/backups/"+id(c))
	}
	v, d := b.pairedLatenciesEach(via, direct, clients, getRound)
	vp50, vp99, dp50, dp99 := percentile(v, 50), percentile(v, 99), percentile(d, 50), percentile(d, 99)
	fmt.Fprintf(&b.report, "\nFor comparison, not a goal of issue 13: %d clients each GETting a backup of their own (no two GETs can share a read), the same rounds: direct p50 / p99 %s / %s ms, sidecar %s / %s ms, ratio %.2f / %.2f. That is the hop itself on 2 cores shared by Elasticsearch, the load generator and the sidecar.\n",
		clients, ms(dp50), ms(dp99), ms(vp50), ms(vp99), float64(vp50)/float64(dp50), float64(vp99)/float64(dp99))
}

// --- the process: start, memory, binary ---

// process reports start to serving, RSS idle and under 64 clients, and the binary's size.
func (b *bench) process() {
	defer b.repo("bench-proc")()
	var startups []time.Duration
	for i := 0; i < 5; i++ {
		sc := b.startSidecar("bench-proc")
		startups = append(startups, sc.startup)
		sc.stop()
	}
	sc := b.startSidecar("bench-proc")
	defer sc.stop()
	b.backupVia(sc, "1")
	time.Sleep(500 * time.Millisecond)
	idle := rssKiB(b.t, sc.cmd.Process.Pid, "VmRSS")
	b.latencies(sc.url+"/actuator/backups/1", 64, 3*time.Second)
	peak := rssKiB(b.t, sc.cmd.Process.Pid, "VmHWM")
	info, _ := os.Stat(b.binary)
	startup := percentile(startups, 50)
	fmt.Fprintf(&b.report, "\n## The process\n\n| figure | value | goal | verdict |\n|---|---|---|---|\n")
	fmt.Fprintf(&b.report, "| start to serving (exec to first answer, median of 5) | %s ms | ≤ 50 ms | %s |\n", ms(startup), verdict(startup <= 50*time.Millisecond))
	fmt.Fprintf(&b.report, "| RSS idle (after one backup and a GET) | %.1f MiB | ≤ 15 MiB | %s |\n", float64(idle)/1024, verdict(idle <= 15*1024))
	fmt.Fprintf(&b.report, "| peak RSS, 64 clients GETting a backup for 3 s | %.1f MiB | ≤ 40 MiB | %s |\n", float64(peak)/1024, verdict(peak <= 40*1024))
	fmt.Fprintf(&b.report, "| static binary (make build: -trimpath -s -w) | %.1f MB | ≤ 20 MB | %s |\n", float64(info.Size())/1e6, verdict(info.Size() <= 20e6))
}

// rssKiB reads a memory figure of a process from /proc.
func rssKiB(t testing.TB, pid int, field string) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, field+":") {
			kib, _ := strconv.Atoi(strings.Fields(line)[1])
			return kib
		}
	}
	return 0
}

// --- backup and restore wall time ---

// backupVia creates backup id through the sidecar and returns the wall time from the POST to
// the first GET that says COMPLETED (GET every 5 ms: the poll must not be what is measured).
func (b *bench) backupVia(sc *sidecarProc, id string) time.Duration {
	start := time.Now()
	if status, body := b.call("POST", sc.url+"/actuator/backups", `{"backupId":`+id+`}`); status != http.StatusAccepted {
		b.t.Fatalf("POST backup %s: got %d %s; want 202", id, status, body)
	}
	for {
		_, body := b.call("GET", sc.url+"/actuator/backups/"+id, "")
		var info struct{ State string }
		json.Unmarshal(body, &info)
		switch info.State {
		case stateCompleted:
			return time.Since(start)
		case stateInProgress:
			time.Sleep(5 * time.Millisecond)
		default:
			b.t.Fatalf("backup %s: %s", id, body)
		}
	}
}

// watchGap watches the two parts of a backup in repo from outside, reading both every 10 ms
// straight from Elasticsearch, until stop is closed, and returns the time from the first read
// that showed part 1 ended to the first read that showed part 2 at all. Elasticsearch's own
// start and end times cannot tell: its clock ticks every 200 ms (thread_pool.estimated_time_interval).
// Both sides are watched alike, so both bear the same extra load.
func (b *bench) watchGap(repo, id string, stop <-chan struct{}) <-chan time.Duration {
	gap := make(chan time.Duration, 1)
	url := fmt.Sprintf("%s/_snapshot/%s/camunda_optimize_%s_*?filter_path=snapshots.snapshot,snapshots.state", b.es.url, repo, id)
	go func() {
		var ended, started time.Time
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for started.IsZero() {
			select {
			case <-stop:
				gap <- -1
				return
			case <-tick.C:
			}
			res, err := b.client.Get(url)
			if err != nil {
				continue
			}
			var answer getSnapshotsAnswer
			json.NewDecoder(res.Body).Decode(&answer)
			res.Body.Close()
			now := time.Now()
			for _, sn := range answer.Snapshots {
				switch {
				case partOf(sn.Name) == 1 && sn.State != "IN_PROGRESS" && ended.IsZero():
					ended = now
				case partOf(sn.Name) == 2:
					started = now
				}
			}
		}
		if ended.IsZero() {
			ended = started // part 2 appeared in the same read as part 1's end
		}
		gap <- started.Sub(ended)
	}()
	return gap
}

// generateData bulk-loads process instances shaped like Optimize's (flow nodes, variables,
// incidents) into the installation's process-instance and variable indices until the
// installation holds at least mb MB on disk, and returns how much it holds.
func (b *bench) generateData(mb int) int64 {
	size := func() int64 {
		b.es.must("POST", "/optimize-*/_flush", "")
		var stats struct {
			All struct {
				Primaries struct {
					Store struct {
						Bytes int64 `json:"size_in_bytes"`
					} `json:"store"`
				} `json:"primaries"`
			} `json:"_all"`
		}
		json.Unmarshal(b.es.must("GET", "/optimize-*,-optimize-east-*,-optimize-logs-*/_stats/store", ""), &stats)
		return stats.All.Primaries.Store.Bytes
	}
	// Strings as keywords (as Optimize maps its IDs and names), no refresh and an async
	// translog while loading: the load is set-up, not what is measured.
	targets := "/optimize-process-instance-*_v8,optimize-external-process-variable_v2-000001"
	b.es.must("PUT", targets+"/_mapping", `{"dynamic_templates":[{"strings":{"match_mapping_type":"string","mapping":{"type":"keyword"}}}]}`)
	b.es.must("PUT", targets+"/_settings", `{"index":{"refresh_interval":"-1","translog.durability":"async"}}`)
	defer b.es.must("PUT", targets+"/_settings", `{"index":{"refresh_interval":null,"translog.durability":null}}`)
	keys := []string{"invoice", "order-fulfilment", "shipping"}
	seq := 0
	for size() < int64(mb)<<20 {
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for batch := 0; batch < 10; batch++ {
					var bulk strings.Builder
					for i := 0; i < 500; i++ {
						n := seq*100000 + w*10000 + batch*500 + i
						index := "optimize-process-instance-" + keys[n%3] + "_v8"
						if n%4 == 3 {
							index = "optimize-external-process-variable_v2-000001"
						}
						fmt.Fprintf(&bulk, "{\"index\":{\"_index\":%q}}\n%s\n", index, processInstance(n, keys[n%3]))
					}
					req, _ := http.NewRequest("POST", b.es.url+"/_bulk", strings.NewReader(bulk.String()))
					req.Header.Set("Content-Type", "application/x-ndjson")
					res, err := b.client.Do(req)
					if err != nil {
						b.t.Error(err)
						return
					}
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode != 200 || strings.Contains(string(body[:min(len(body), 100)]), `"errors":true`) {
						b.t.Errorf("bulk: %d %.300s", res.StatusCode, body)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		if b.t.Failed() {
			b.t.FailNow()
		}
		seq++
	}
	return size()
}

// processInstance is one process instance document like Optimize's, with random IDs.
func processInstance(n int, key string) string {
	id := func() string {
		r := make([]byte, 16)
		rand.Read(r)
		return hex.EncodeToString(r)
	}
	start := 1767225600000 + int64(n)*137
	var flow, vars []string
	for i := 0; i < 8; i++ {
		flow = append(flow, fmt.Sprintf(`{"flowNodeInstanceId":%q,"flowNodeId":"task_%d","flowNodeType":"userTask","startDate":%d,"endDate":%d,"totalDurationInMs":%d,"canceled":false,"userTaskInstanceId":%q}`,
			id(), i, start+int64(i)*1000, start+int64(i)*1000+900, 900+i, id()))
	}
	for i := 0; i < 6; i++ {
		vars = append(vars, fmt.Sprintf(`{"id":%q,"name":"var_%d","type":"String","value":[%q],"version":%d}`, id(), i, id(), i))
	}
	return fmt.Sprintf(`{"processDefinitionKey":%q,"processDefinitionVersion":"%d","processInstanceId":%q,"businessKey":%q,"startDate":%d,"endDate":%d,"duration":%d,"state":"COMPLETED","tenantId":null,"dataSource":{"type":"zeebe","name":"zeebe-record"},"flowNodeInstances":[%s],"variables":[%s],"incidents":[]}`,
		key, n%5+1, id(), id(), start, start+60000, 60000+n%1000, strings.Join(flow, ","), strings.Join(vars, ","))
}

// directBackup takes the two snapshots of a backup into repo directly, one after the other
// with wait_for_completion=true: the index sets the sidecar resolves (parts), the body the
// sidecar sends (snapshotRequest), and returns the wall time.
func (b *bench) directBackup(repo, id string, parts [2][]string) time.Duration {
	start := time.Now()
	for i, indices := range parts {
		name := snapshotName(id, "3.9.0", i+1)
		meta := snapshotMetadata{BackupID: id, Version: "3.9.0", PartNo: i + 1, PartCount: partCount, CreatedBy: "optimize-backup", IndexPrefix: "optimize", BackupNonce: newNonce(), Nonce: newNonce()}
		body, _ := json.Marshal(snapshotRequest{Indices: indices, FeatureStates: []string{"none"}, Metadata: meta})
		if status, out := b.call("PUT", b.es.url+"/_snapshot/"+repo+"/"+name+"?wait_for_completion=true", string(body)); status != 200 || !strings.Contains(string(out), `"SUCCESS"`) {
			b.t.Fatalf("direct snapshot %s: %d %s", name, status, out)
		}
	}
	return time.Since(start)
}

// dropInstallation deletes the indices a backup holds, so that both restores start from an
// installation that is gone, as after a disaster.
func (b *bench) dropInstallation(snaps []snapshot) {
	var indices []string
	for _, sn := range snaps {
		indices = append(indices, sn.Indices...)
	}
	b.es.must("DELETE", "/"+strings.Join(indices, ","), "")
}

// restoreVia restores backup id through the sidecar and returns the wall time from the POST
// to the first GET of the restore that says COMPLETED.
func (b *bench) restoreVia(sc *sidecarProc, id string) time.Duration {
	start := time.Now()
	if status, body := b.call("POST", sc.url+"/actuator/backups/"+id+"/restore", ""); status != http.StatusAccepted {
		b.t.Fatalf("POST restore %s: got %d %s; want 202", id, status, body)
	}
	for {
		_, body := b.call("GET", sc.url+"/actuator/backups/"+id+"/restore", "")
		var job struct{ State, FailureReason string }
		json.Unmarshal(body, &job)
		switch job.State {
		case restoreCompleted:
			return time.Since(start)
		case restorePending, restoreRunning:
			time.Sleep(5 * time.Millisecond)
		default:
			b.t.Fatalf("restore %s: %s", id, body)
		}
	}
}

// directRestore restores the backup's two snapshots from repo directly, one after the other
// with wait_for_completion=true (the same indices, aliases, no global state), and returns the
// wall time.
func (b *bench) directRestore(repo string, snaps []snapshot) time.Duration {
	start := time.Now()
	for _, sn := range snaps {
		body, _ := json.Marshal(map[string]any{"indices": sn.Indices, "include_global_state": false, "include_aliases": true})
		if status, out := b.call("POST", b.es.url+"/_snapshot/"+repo+"/"+sn.Name+"/_restore?wait_for_completion=true", string(body)); status != 200 {
			b.t.Fatalf("direct restore %s: %d %s", sn.Name, status, out)
		}
	}
	return time.Since(start)
}

// median is the middle of ds.
func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

// backupAndRestore measures backup and restore wall time on generated data, each round in a
// fresh repository per side (a snapshot into a repository that holds the data already copies
// nothing), sidecar and direct in turn.
func (b *bench) backupAndRestore() {
	mb := 200
	if v, err := strconv.Atoi(os.Getenv("BENCH_DATA_MB")); err == nil {
		mb = v
	}
	started := time.Now()
	bytes := b.generateData(mb)
	loadTime := time.Since(started)
	// The index sets of the two parts, as the sidecar resolves them (the same code in-process).
	cfg := testConfig(b.es.url)
	_, part1, part2, err := newTestServer(b.t, cfg).installationIndices(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	parts := [2][]string{part1, part2}
	var viaB, dirB, viaR, dirR, gapVia, gapDir []time.Duration
	for round := 1; round <= benchRounds; round++ {
		id := strconv.Itoa(round)
		viaRepo, dirRepo := fmt.Sprintf("bench-backup-%d-sidecar", round), fmt.Sprintf("bench-backup-%d-direct", round)
		cleanVia, cleanDir := b.repo(viaRepo), b.repo(dirRepo)
		sc := b.startSidecar(viaRepo)
		// Each round in the other order, so that neither side always runs on a warmer machine.
		backups := []func(){
			func() {
				stop := make(chan struct{})
				gap := b.watchGap(viaRepo, id, stop)
				viaB = append(viaB, b.backupVia(sc, id))
				close(stop)
				gapVia = append(gapVia, <-gap)
			},
			func() {
				stop := make(chan struct{})
				gap := b.watchGap(dirRepo, id, stop)
				dirB = append(dirB, b.directBackup(dirRepo, id, parts))
				close(stop)
				gapDir = append(gapDir, <-gap)
			},
		}
		if round%2 == 0 {
			slices.Reverse(backups)
		}
		for _, f := range backups {
			f()
		}
		snaps := b.es.snapshots(viaRepo, "camunda_optimize_"+id+"_*")
		if got, want := len(snaps[0].Indices)+len(snaps[1].Indices), len(parts[0])+len(parts[1]); got != want {
			b.t.Fatalf("the sidecar's backup holds %d indices, the direct one %d", got, want)
		}
		restores := []func(){
			func() { b.dropInstallation(snaps); viaR = append(viaR, b.restoreVia(sc, id)) },
			func() { b.dropInstallation(snaps); dirR = append(dirR, b.directRestore(dirRepo, snaps)) },
		}
		if round%2 == 0 {
			slices.Reverse(restores)
		}
		for _, f := range restores {
			f()
		}
		sc.stop()
		cleanVia()
		cleanDir()
	}
	vb, db, vr, dr := median(viaB), median(dirB), median(viaR), median(dirR)
	fmt.Fprintf(&b.report, "\n## Backup and restore wall time\n\n%.0f MiB of Optimize-shaped data on disk (the installation's indices, primaries; %s to generate with the bulk API), %d rounds, each in fresh repositories (fs, on the node's run dir), medians. "+
		"Backup: POST until GET says COMPLETED (GET every 5 ms) ÷ the same two snapshots (same indices and body) taken directly one after the other with `wait_for_completion=true`. "+
		"Restore: the installation's indices deleted first, then POST restore until GET restore says COMPLETED ÷ the two snapshots restored directly one after the other with `wait_for_completion=true` (same indices, aliases); the order of the two restores alternates. "+
		"The sidecar runs without OPTIMIZE_HEALTH_URL: with it, its check that Optimize is stopped adds %d × %s of probing to a restore.\n\n",
		float64(bytes)/(1<<20), loadTime.Round(time.Second), benchRounds, probeTries-1, probeGap)
	fmt.Fprintf(&b.report, "| figure | direct | sidecar | ratio | goal | verdict |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b.report, "| backup wall time ms (rounds: sidecar %s; direct %s) | %s | %s | %.3f | ≤ 1.05 | %s |\n", msList(viaB), msList(dirB), ms(db), ms(vb), float64(vb)/float64(db), verdict(float64(vb) <= 1.05*float64(db)))
	fmt.Fprintf(&b.report, "| part 1 end → part 2 start ms, seen from outside every 10 ms (rounds: sidecar %s; direct %s; max) | %s | %s | | ≤ 100 ms | %s |\n", msList(gapVia), msList(gapDir), ms(slices.Max(gapDir)), ms(slices.Max(gapVia)), verdict(slices.Max(gapVia) <= 100*time.Millisecond))
	fmt.Fprintf(&b.report, "| restore wall time ms (rounds: sidecar %s; direct %s) | %s | %s | %.3f | ≤ 1.05 | %s |\n", msList(viaR), msList(dirR), ms(dr), ms(vr), float64(vr)/float64(dr), verdict(float64(vr) <= 1.05*float64(dr)))
}

// msList formats durations as whole milliseconds.
func msList(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, strconv.FormatInt(d.Milliseconds(), 10))
	}
	return strings.Join(s, ", ")
}

// --- how cost grows: list, and GET, at 10 to 10,000 backups ---

// createBackups creates the snapshots of backups from..to (both parts, part 1 first) of a
// tiny index, concurrently: Elasticsearch finalizes snapshots of one repository one at a time,
// so many in flight keep it busy.
func (b *bench) createBackups(repo string, from, to int) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for w := 0; w < 200; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i > to || b.t.Failed() {
					return
				}
				for part := 1; part <= 2; part++ {
					url := fmt.Sprintf("%s/_snapshot/%s/camunda_optimize_%d_3.9.0_part_%d_of_2?wait_for_completion=true", b.es.url, repo, i, part)
					body := fmt.Sprintf(`{"indices":"bench-tiny","include_global_state":false,"metadata":{"backupId":"%d","version":"3.9.0","partNo":%d,"partCount":2,"createdBy":"optimize-backup","indexPrefix":"optimize"}}`, i, part)
					if status, out := b.call("PUT", url, body); status != 200 {
						b.t.Errorf("create %s: %d %s", url, status, out)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if b.t.Failed() {
		b.t.FailNow()
	}
}

// listDirect lists every Optimize snapshot with one direct request (directListQuery) and
// returns how many it got.
func (b *bench) listDirect(query string) int {
	status, body := b.call("GET", b.es.url+query, "")
	var answer struct {
		Snapshots []json.RawMessage `json:"snapshots"`
	}
	if err := json.Unmarshal(body, &answer); status != 200 || err != nil {
		b.t.Fatalf("GET %s: %d %v %.300s", query, status, err, body)
	}
	return len(answer.Snapshots)
}

// listVia lists every backup through the sidecar and returns how many it listed.
func (b *bench) listVia(sc *sidecarProc) int {
	status, body := b.call("GET", sc.url+"/actuator/backups", "")
	var list []json.RawMessage
	if err := json.Unmarshal(body, &list); status != 200 || err != nil {
		b.t.Fatalf("list: %d %v %.300s", status, err, body)
	}
	return len(list)
}

// listAllocs lists every backup through an in-process sidecar (the same code as the binary)
// and returns the allocations and bytes allocated per call.
func (b *bench) listAllocs(repo string) (allocs, bytes uint64) {
	cfg := testConfig(b.es.url)
	cfg.Repository = repo
	srv := newTestServer(b.t, cfg)
	srv.log = slog.New(slog.DiscardHandler) // the access log would flood make bench's output
	handler := srv.routes()
	list := func() {
		res := httptest.NewRecorder()
		handler.ServeHTTP(res, httptest.NewRequest("GET", "/actuator/backups", nil))
		if res.Code != 200 {
			b.t.Fatalf("list: %d %.300s", res.Code, res.Body)
		}
	}
	list() // warm: connections, first-use allocations
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const calls = 3
	for i := 0; i < calls; i++ {
		list()
	}
	runtime.ReadMemStats(&after)
	return (after.Mallocs - before.Mallocs) / calls, (after.TotalAlloc - before.TotalAlloc) / calls
}

// growthCache is where the repository of 10,000 backups is kept between runs (make clean
// removes it): Elasticsearch finalizes the snapshots of one repository one at a time, writing
// the whole repository index each time, so its 20,000 snapshots take about 15 minutes to make
// on 2 shared cores, and the whole run would not fit in 15. BENCH_CACHE overrides the path.
func growthCache() string {
	if c := os.Getenv("BENCH_CACHE"); c != "" {
		return c
	}
	name := "bench-repo-10000-backups.tar.gz"
	if testDB() == databaseOpenSearch {
		name = "bench-repo-10000-backups-opensearch.tar.gz" // OpenSearch reads no Elasticsearch 8 repository
	}
	abs, _ := filepath.Abs(filepath.Join("testenv", "target", name))
	return abs
}

// growth measures, in repositories of 10, 100, 1,000 and 10,000 backups (2 snapshots each),
// listing every backup and GET one backup, sidecar and direct in turn. The first three sizes
// are one repository grown live; the 10,000 one is that repository grown further, or, once a
// run has made it, a copy of it from growthCache registered read-only.
func (b *bench) growth() {
	b.es.do("DELETE", "/bench-tiny", "")
	b.es.must("PUT", "/bench-tiny", `{"settings":{"number_of_shards":1,"number_of_replicas":0}}`)
	b.es.must("PUT", "/bench-tiny/_doc/1?refresh=true", `{"tiny":true}`)
	defer b.es.do("DELETE", "/bench-tiny", "")
	const live = "bench-grow"
	defer b.repo(live)()
	cache := growthCache()
	_, err := os.Stat(cache)
	cached := err == nil

	fmt.Fprintf(&b.report, "\n## How cost grows with the repository\n\nOne repository grown to each size (snapshots of a one-document index, created 200 at a time; the 10,000 one %s). "+
		"List: `GET /actuator/backups` ÷ one get-snapshots of every Optimize snapshot with the list's fields (`%s`, which loads each snapshot once; the sidecar reads the catalogue, then the snapshots by name); medians of alternating rounds (101 up to 100 backups, 21 at 1,000, %d at 10,000) after five unmeasured lists each (one at 10,000). Allocations: the same code in-process, per listed backup. "+
		"GET: backup 1, one client, p50 of %d alternating rounds of %s.\n\n",
		map[bool]string{true: "a copy of " + filepath.Base(cache) + ", made by an earlier run", false: "grown live, then saved to " + filepath.Base(cache) + " for later runs"}[cached],
		directListQuery(live), benchRounds, getRounds, getRound/2)
	fmt.Fprintf(&b.report, "| backups | created in | list direct ms | list sidecar ms | ratio | goal | verdict | allocs per backup | bytes per backup | GET direct p50 ms | GET sidecar p50 ms |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	have := 0
	for _, n := range []int{10, 100, 1000, 10000} {
		repo := live
		started := time.Now()
		switch {
		case n == 10000 && cached:
			repo = "bench-many-10000"
			defer b.cachedRepo(repo, cache)()
		default:
			b.createBackups(repo, have+1, n)
			have = n
			if n == 10000 {
				b.saveRepo(live, cache)
			}
		}
		b.measureGrowth(repo, n, time.Since(started))
	}
}

// cachedRepo unpacks the cached repository under the node's path.repo and registers it; it
// returns the clean-up. Not read-only, although nothing is written to it: Elasticsearch does
// not cache the repository index of a read-only repository and reads all 20,000 entries again
// for every request, which is not what a repository in use costs. The copy is this run's own.
func (b *bench) cachedRepo(name, cache string) func() {
	dir := filepath.Join(b.es.runDir, "repo", name)
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	if out, err := exec.Command("tar", "-xzf", cache, "-C", dir, "--no-same-owner").CombinedOutput(); err != nil {
		b.t.Fatalf("unpacking %s: %v %s", cache, err, out)
	}
	// The node may run as another user (es-start.sh as root), and checks that it can write.
	exec.Command("chmod", "-R", "a+rwX", dir).Run()
	b.es.must("PUT", "/_snapshot/"+name, fmt.Sprintf(`{"type":"fs","settings":{"location":%q}}`, dir))
	return func() {
		b.es.do("DELETE", "/_snapshot/"+name, "")
		os.RemoveAll(dir)
	}
}

// saveRepo packs the repository's directory into the cache for later runs.
func (b *bench) saveRepo(name, cache string) {
	os.MkdirAll(filepath.Dir(cache), 0o755)
	tmp := cache + ".tmp"
	if out, err := exec.Command("tar", "-czf", tmp, "-C", filepath.Join(b.es.runDir, "repo", name), ".").CombinedOutput(); err != nil {
		b.t.Logf("bench: not caching the repository: %v %s", err, out)
		return
	}
	os.Rename(tmp, cache)
}

// measureGrowth lists every backup of a repository of n backups and GETs backup 1, through the
// sidecar and directly in turn, and adds a row to the report.
func (b *bench) measureGrowth(repo string, n int, created time.Duration) {
	sc := b.startSidecar(repo)
	defer sc.stop()
	directQuery := directListQuery(repo)
	getQuery := capturedQuery(b.t, repo, "/actuator/backups/1")
	// Small lists take milliseconds, which one busy moment of a shared machine doubles: many
	// rounds for them (21 rounds at 100 backups moved the ratio by 0.2 between runs; 101 take
	// a second), after a few unmeasured lists each (the sidecar was just started, and a
	// sidecar in use has its buffers and heap grown).
	rounds, warmups := benchRounds, 1
	switch {
	case n <= 100:
		rounds, warmups = 101, 5
	case n <= 1000:
		rounds, warmups = 21, 5
	}
	for range warmups {
		b.listDirect(directQuery)
		b.listVia(sc)
	}
	var via, direct []time.Duration
	for round := 0; round < rounds; round++ {
		measure := []func(){
			func() {
				start := time.Now()
				if got := b.listDirect(directQuery); got != 2*n {
					b.t.Fatalf("direct list: %d snapshots; want %d", got, 2*n)
				}
				direct = append(direct, time.Since(start))
			},
			func() {
				start := time.Now()
				if got := b.listVia(sc); got != n {
					b.t.Fatalf("sidecar list: %d backups; want %d", got, n)
				}
				via = append(via, time.Since(start))
			},
		}
		if round%2 == 1 {
			slices.Reverse(measure)
		}
		for _, m := range measure {
			m()
		}
	}
	allocs, bytes := b.listAllocs(repo)
	gv, gd := b.pairedLatencies(sc.url+"/actuator/backups/1", b.es.url+getQuery, 1, getRound/2)
	ratio := float64(median(via)) / float64(median(direct))
	// Issue 13 sets the list's goal at 100, 1,000 and 10,000 backups; 10 shows how cost grows.
	// Issue 19 (net/http's transport, encoding/json) moved the goal at 100 backups to 1.3.
	limit := 1.2
	if n == 100 {
		limit = 1.3
	}
	goal, result := fmt.Sprintf("≤ %.1f", limit), verdict(ratio <= limit)
	if n < 100 {
		goal, result = "none", "-"
	}
	fmt.Fprintf(&b.report, "| %d | %s | %s | %s | %.2f | %s | %s | %d | %d | %s | %s |\n", n, created.Round(time.Second), ms(median(direct)), ms(median(via)), ratio, goal, result,
		allocs/uint64(n), bytes/uint64(n), ms(percentile(gd, 50)), ms(percentile(gv, 50)))
}

// --- snapshot details read per request, at 10 to 10,000 backups ---

// taskCosts counts, in repositories of 10, 1,000 and 10,000 backups, the snapshot details the
// database reads from the blob store (snap-*.dat opened, blobReads: on S3, GCS or Azure a remote
// GET each; on Elasticsearch as many snapshot_meta tasks) per request of a sidecar just started:
// its first scrape, the scrapes after it, ?limit=5, GET of one backup and the whole list; then
// the first scrape and ?limit=5 of a second sidecar started on the same repository (a replica
// that starts, or a restart). Counts are exact: the largest of 3 requests each.
func (b *bench) taskCosts() {
	b.es.do("DELETE", "/bench-tiny", "")
	b.es.must("PUT", "/bench-tiny", `{"settings":{"number_of_shards":1,"number_of_replicas":0}}`)
	b.es.must("PUT", "/bench-tiny/_doc/1?refresh=true", `{"tiny":true}`)
	defer b.es.do("DELETE", "/bench-tiny", "")
	const live = "bench-tasks"
	defer b.repo(live)()
	fmt.Fprintf(&b.report, "\n## Snapshot details read per request\n\nSnapshot details the database reads from the blob store (`snap-*.dat` opened in the fs repository, counted with inotify; on Elasticsearch as many `snapshot_meta` tasks): on S3, GCS or Azure a remote GET each. A sidecar started on the repository with an empty jobs index: its first scrapes read every finished snapshot once and store their facts (a scrape that reaches its 10 s deadline keeps what it read, and the next carries on: they are repeated until one reads nothing, which is counted too); the figures after them are the largest of 3 requests. Then a second sidecar (a replica that starts, or a restart): its first scrape and ?limit=5. Times are one request's wall time.\n\n")
	fmt.Fprintf(&b.report, "| backups | first scrapes: reads / ms (scrapes until one reads nothing) | scrape: reads / ms | goal | ?limit=5: reads / ms | goal | second sidecar's first scrape: reads / ms | its ?limit=5: reads | GET one backup: reads | whole list: reads | RSS after the scrapes MiB | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	have := 0
	for _, n := range []int{10, 1000, 10000} {
		repo := live
		switch {
		case n == 10000:
			if _, err := os.Stat(growthCache()); err != nil {
				fmt.Fprintf(&b.report, "| 10000 | not measured: no cached repository (%s; BENCH_ONLY=list makes it) | | | | | | | | | | |\n", filepath.Base(growthCache()))
				continue
			}
			repo = "bench-tasks-10000"
			defer b.cachedRepo(repo, growthCache())()
		default:
			b.createBackups(repo, have+1, n)
			have = n
		}
		b.taskRow(repo, n)
	}
}

// taskRow adds the row of a repository of n backups to the tasks table.
func (b *bench) taskRow(repo string, n int) {
	b.es.do("DELETE", "/camunda-optimize-backup-jobs", "") // no facts stored by an earlier row
	var location map[string]struct{ Settings struct{ Location string } }
	json.Unmarshal(b.es.must("GET", "/_snapshot/"+repo, ""), &location)
	reads := watchBlobReads(b.t, location[repo].Settings.Location)
	sc := b.startSidecar(repo)
	defer sc.stop()
	// cost returns the most reads and the longest wall time of rounds requests.
	cost := func(sc *sidecarProc, path string, rounds int) (most int, took time.Duration) {
		for range rounds {
			before, start := reads.count(), time.Now()
			if status, body := b.call("GET", sc.url+path, ""); status != 200 {
				b.t.Fatalf("GET %s: %d %.300s", path, status, body)
			}
			took = max(took, time.Since(start))
			most = max(most, reads.count()-before)
		}
		return most, took
	}
	// The first scrapes learn the repository: one, or a few when the first outlasts the scrape's
	// 10 s deadline (each keeps what it read, the next carries on).
	firstReads, scrapes, firstTook := 0, 0, time.Duration(0)
	for reads := -1; reads != 0 && scrapes < 5; scrapes++ {
		var took time.Duration
		reads, took = cost(sc, "/actuator/prometheus", 1)
		firstReads, firstTook = firstReads+reads, firstTook+took
	}
	scrapeReads, scrapeTook := cost(sc, "/actuator/prometheus", 3)
	limitReads, limitTook := cost(sc, "/actuator/backups?limit=5", 3)
	getReads, _ := cost(sc, "/actuator/backups/1", 3)
	// The sidecar's memory with the facts of n backups, before the whole list adds its own.
	rss := rssKiB(b.t, sc.cmd.Process.Pid, "VmRSS")
	listReads, _ := cost(sc, "/actuator/backups", 1)
	second := b.startSidecar(repo)
	defer second.stop()
	secondReads, secondTook := cost(second, "/actuator/prometheus", 1)
	secondLimit, _ := cost(second, "/actuator/backups?limit=5", 1)
	fmt.Fprintf(&b.report, "| %d | %d / %s (%d) | %d / %s | ≤ 10 | %d / %s | ≤ 20 | %d / %s | %d | %d | %d | %.1f | %s |\n", n, firstReads, ms(firstTook), scrapes, scrapeReads, ms(scrapeTook),
		limitReads, ms(limitTook), secondReads, ms(secondTook), secondLimit, getReads, listReads, float64(rss)/1024,
		verdict(scrapeReads <= 10 && limitReads <= 20 && secondReads <= 10 && secondLimit <= 20))
}
