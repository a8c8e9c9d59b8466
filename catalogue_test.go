package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
)

// catalogueNames are the snapshot names of the recorded catalogue (catalogueBackups), sorted
// as the sidecar asks for their facts.
func catalogueNames() []string {
	var names []string
	for _, b := range catalogueBackups {
		for part := 1; part <= b.parts; part++ {
			names = append(names, snapshotName(b.id, "3.9.0", part))
		}
	}
	slices.Sort(names)
	return names
}

// catalogueRoutes serve the recorded catalogue and the facts of all its snapshots, read by name.
func catalogueRoutes() map[string]string {
	return map[string]string{
		listAll: "catalogue",
		"GET /_snapshot/test-repo/" + strings.Join(catalogueNames(), ","): "catalogue-facts",
	}
}

// newest2 is the read of the two newest recorded backups' snapshots (10 and 5), by name.
const newest2 = "GET /_snapshot/test-repo/camunda_optimize_10_3.9.0_part_1_of_2,camunda_optimize_10_3.9.0_part_2_of_2,camunda_optimize_5_3.9.0_part_1_of_2,camunda_optimize_5_3.9.0_part_2_of_2"

// limitRoutes are what ?limit=2 reads of the recorded repository: the catalogue, the facts and
// the two newest backups.
func limitRoutes() map[string]string {
	routes := catalogueRoutes()
	routes[newest2] = "catalogue-newest-2"
	return routes
}

// TestListLimitReadsOnlyTheNewest checks on the recorded repository that ?limit=2 reads the
// catalogue, the facts of the snapshots it does not know, and then exactly the snapshots of the
// two newest backups; a second list knows every snapshot and reads only the catalogue and the two.
func TestListLimitReadsOnlyTheNewest(t *testing.T) {
	fake := newFakeES(t, limitRoutes())
	srv := newTestServer(t, testConfig(fake.srv.URL))
	for round, want := range [][]string{{listAll, "GET /_snapshot/test-repo/" + strings.Join(catalogueNames(), ","), newest2}, {listAll, newest2}} {
		before := len(fake.sent())
		res := serve(t, srv, "GET", "/actuator/backups?limit=2", "", nil)
		var got []struct{ BackupID json.Number }
		if err := json.Unmarshal(res.Body.Bytes(), &got); err != nil || res.Code != 200 {
			t.Fatalf("round %d: got %d %s; want 200 and a list", round, res.Code, res.Body)
		}
		if len(got) != 2 || got[0].BackupID != "10" || got[1].BackupID != "5" {
			t.Errorf("round %d: got %s; want backups 10 and 5, newest first", round, res.Body)
		}
		if diff := gocmp.Diff(want, fake.sent()[before:]); diff != "" {
			t.Errorf("round %d: Elasticsearch requests (-want +got):\n%s", round, diff)
		}
	}
}

// simRepo is a simulated repository behind a fake get-snapshots API that answers like
// Elasticsearch 8.14 (recorded on the real node): the catalogue (verbose=false) in name order,
// reads by name (ignore_unavailable), and the paged list sorted by start time. It counts what
// Elasticsearch's snapshot_meta pool would: one task per finished snapshot whose details it
// returns.
type simRepo struct {
	mu    sync.Mutex
	snaps []snapshot
	tasks int
	// failReads fails the reads by name after the first n (when n > 0), as a deadline would.
	failReads int
	reads     int
}

// newSimRepo makes n backups with random IDs (numbers and strings, some prefixes of others),
// random part counts and states, started on Elasticsearch's 200 ms clock: many starts are equal,
// so the list's tie-break by ID decides.
func newSimRepo(r *rand.Rand, n int) *simRepo {
	sim := &simRepo{}
	start := int64(1796523358436)
	ids := map[string]bool{}
	for len(ids) < n {
		id := strconv.Itoa(r.IntN(3 * n))
		if r.IntN(4) == 0 {
			id = "nightly" + strings.Repeat("_1", r.IntN(3))
		}
		if ids[id] {
			continue
		}
		ids[id] = true
		parts := []int{1, 2}
		if r.IntN(5) == 0 {
			parts = parts[:1]
		}
		for _, part := range parts {
			start += 200 * int64(r.IntN(2))
			state := []string{"SUCCESS", "SUCCESS", "SUCCESS", "FAILED", "PARTIAL", "IN_PROGRESS"}[r.IntN(6)]
			end := start + 200*int64(r.IntN(3))
			if state == "IN_PROGRESS" {
				end = 0
			}
			sim.snaps = append(sim.snaps, snapshot{Name: snapshotName(id, "3.9.0", part), UUID: fmt.Sprintf("uuid-%d", len(sim.snaps)),
				State: state, StartMillis: start, EndMillis: end, Indices: []string{"optimize-import-index_v3"},
				Metadata: map[string]any{"indexPrefix": []string{"optimize", "optimize", "optimize-east"}[r.IntN(3)]}})
		}
	}
	return sim
}

// serve answers one get-snapshots request of the simulated repository.
func (sim *simRepo) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	sim.mu.Lock()
	defer sim.mu.Unlock()
	target := strings.TrimPrefix(r.URL.Path, "/_snapshot/test-repo/")
	q := r.URL.Query()
	var out []snapshot
	next := ""
	switch {
	case q.Get("verbose") == "false":
		for _, sn := range sim.snaps {
			out = append(out, snapshot{Name: sn.Name, UUID: sn.UUID, State: sn.State})
		}
		slices.SortFunc(out, func(a, b snapshot) int { return strings.Compare(a.Name, b.Name) })
	case target == "camunda_optimize_*":
		all := slices.Clone(sim.snaps)
		slices.SortStableFunc(all, func(a, b snapshot) int { return cmp.Compare(b.StartMillis, a.StartMillis) })
		from, _ := strconv.Atoi(q.Get("after"))
		size, _ := strconv.Atoi(q.Get("size"))
		out = all[from:min(from+size, len(all))]
		if from+size < len(all) {
			next = strconv.Itoa(from + size)
		}
		sim.count(out)
	default:
		if sim.reads++; sim.failReads > 0 && sim.reads > sim.failReads {
			w.WriteHeader(http.StatusGatewayTimeout)
			return
		}
		names := strings.Split(target, ",")
		for _, sn := range sim.snaps {
			if slices.Contains(names, sn.Name) {
				out = append(out, sn)
			}
		}
		sim.count(out)
	}
	json.NewEncoder(w).Encode(map[string]any{"snapshots": out, "next": next})
}

// count adds the snapshot_meta tasks of returning these snapshots' details.
func (sim *simRepo) count(snaps []snapshot) {
	for _, sn := range snaps {
		if sn.State != "IN_PROGRESS" {
			sim.tasks++
		}
	}
}

// taskCount is how many snapshot_meta tasks the repository has cost so far.
func (sim *simRepo) taskCount() int {
	sim.mu.Lock()
	defer sim.mu.Unlock()
	return sim.tasks
}

// TestListLimitIsTheListsFirstN checks on simulated repositories (ties in start time, IDs that
// are prefixes of each other, lone parts, every state) that ?limit=N answers exactly the first
// N backups of the whole list, for every N, and that once the process knows the repository it
// costs at most 2N snapshot_meta tasks.
func TestListLimitIsTheListsFirstN(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 1))
	for round := range 20 {
		sim := newSimRepo(r, 1+r.IntN(40))
		fake := httptest.NewServer(http.HandlerFunc(sim.serve))
		srv := newTestServer(t, testConfig(fake.URL))
		srv.listPageSize = 7
		// Near the part-2 grace of some lone part 1s: the states must agree there too.
		srv.now = func() time.Time {
			return time.UnixMilli(sim.snaps[len(sim.snaps)-1].StartMillis).Add(srv.cfg.Part2Grace)
		}
		all := serve(t, srv, "GET", "/actuator/backups", "", nil)
		var whole []json.RawMessage
		if err := json.Unmarshal(all.Body.Bytes(), &whole); err != nil {
			t.Fatalf("round %d: list: %v %s", round, err, all.Body)
		}
		for n := 1; n <= len(whole)+1; n++ {
			before := sim.taskCount()
			res := serve(t, srv, "GET", fmt.Sprintf("/actuator/backups?limit=%d", n), "", nil)
			var got []json.RawMessage
			if err := json.Unmarshal(res.Body.Bytes(), &got); err != nil {
				t.Fatalf("round %d, limit %d: %v %s", round, n, err, res.Body)
			}
			want := whole[:min(n, len(whole))]
			if diff := gocmp.Diff(fmt.Sprintf("%s", want), fmt.Sprintf("%s", got)); diff != "" {
				t.Errorf("round %d, limit %d: (-list's first N +?limit=N):\n%s", round, n, diff)
			}
			if tasks := sim.taskCount() - before; n > 1 && tasks > 2*n {
				t.Errorf("round %d, limit %d: got %d snapshot_meta tasks; want at most %d", round, n, tasks, 2*n)
			}
		}
		fake.Close()
	}
}

// TestFactsKeptBatchByBatch checks that a first read of the facts that fails half way (a slow
// blob store outlasting the scrape's deadline) keeps what it learned: the next scrape reads
// only the rest, so a large repository is learned over a few scrapes instead of never.
func TestFactsKeptBatchByBatch(t *testing.T) {
	sim := newSimRepo(rand.New(rand.NewPCG(22, 2)), 200)
	sim.failReads = 2
	fake := httptest.NewServer(http.HandlerFunc(sim.serve))
	defer fake.Close()
	cfg := testConfig(fake.URL)
	cfg.ESTimeout = time.Second
	srv := newTestServer(t, cfg)
	srv.es.read = srv.es.write // no retries of the failed read
	if up := gauges(scrape(t, srv), "optimize_backup_repository_up", "")[""]; up != 0 {
		t.Fatalf("got optimize_backup_repository_up %v; want 0 while the facts read fails", up)
	}
	learned := sim.taskCount()
	sim.failReads = 0
	if up := gauges(scrape(t, srv), "optimize_backup_repository_up", "")[""]; up != 1 {
		t.Fatalf("got optimize_backup_repository_up %v; want 1", up)
	}
	finished := 0
	for _, sn := range sim.snaps {
		if sn.State != "IN_PROGRESS" {
			finished++
		}
	}
	if total := sim.taskCount(); learned == 0 || learned >= finished || total != finished {
		t.Errorf("the failed scrape read %d snapshots' details, both %d; want some, then only the rest: %d in all", learned, total, finished)
	}
}
