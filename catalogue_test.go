package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
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

// Requests of the facts documents in the jobs index (factstore.go).
const (
	factsMget = "POST /camunda-optimize-backup-jobs/_mget"
	factsBulk = "POST /camunda-optimize-backup-jobs/_bulk"
)

// readFacts is the read of the facts of every snapshot of the recorded catalogue, by name.
var readFacts = "GET /_snapshot/test-repo/" + strings.Join(catalogueNames(), ",")

// catalogueRoutes serve the recorded catalogue to a sidecar that knows none of its snapshots
// and finds no jobs index: the facts are read by name, the jobs index created, the facts stored.
func catalogueRoutes() map[string]string {
	return map[string]string{
		listAll:    "catalogue",
		factsMget:  "facts-mget-no-index",
		readFacts:  "catalogue-facts",
		createJobs: "jobs-index-created",
		factsBulk:  "facts-bulk-stored",
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
// catalogue, the facts of the snapshots it does not know (and stores them), and then exactly
// the snapshots of the two newest backups; a second list knows every snapshot and reads only
// the catalogue and the two.
func TestListLimitReadsOnlyTheNewest(t *testing.T) {
	fake := newFakeES(t, limitRoutes())
	srv := newTestServer(t, testConfig(fake.srv.URL))
	for round, want := range [][]string{{listAll, factsMget, readFacts, createJobs, factsBulk, newest2}, {listAll, newest2}} {
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
// reads by name (ignore_unavailable), and the list of every snapshot sorted by start time. It
// counts what Elasticsearch's snapshot_meta pool would: one task per finished snapshot whose
// details it returns.
type simRepo struct {
	mu    sync.Mutex
	snaps []snapshot
	tasks int
	// failReads fails the reads by name after the first n (when n > 0), as a deadline would.
	failReads int
	reads     int
	// docs is the jobs index (nil: none yet), as its multi-get and bulk requests see it;
	// refuseDocs answers them 403, as to a user without the privilege.
	docs       map[string]json.RawMessage
	refuseDocs bool
	// failMget and failBulk answer those requests 503 (overloaded); autoCreated tells that a
	// bulk request created the jobs index, as Elasticsearch does, with its default settings.
	failMget, failBulk bool
	autoCreated        bool
	// hugeList answers the list of every snapshot with more than maxAnswerBytes.
	hugeList bool
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

// serve answers one get-snapshots request of the simulated repository, or one of the jobs index.
func (sim *simRepo) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	sim.mu.Lock()
	defer sim.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/camunda-optimize-backup-jobs") {
		sim.serveJobsIndex(w, r)
		return
	}
	target := strings.TrimPrefix(r.URL.Path, "/_snapshot/test-repo/")
	q := r.URL.Query()
	var out []snapshot
	switch {
	case q.Get("verbose") == "false":
		for _, sn := range sim.snaps {
			out = append(out, snapshot{Name: sn.Name, UUID: sn.UUID, State: sn.State})
		}
		slices.SortFunc(out, func(a, b snapshot) int { return strings.Compare(a.Name, b.Name) })
	case target == "camunda_optimize_*":
		all := slices.Clone(sim.snaps)
		slices.SortStableFunc(all, func(a, b snapshot) int { return cmp.Compare(b.StartMillis, a.StartMillis) })
		if sim.hugeList {
			w.Write(make([]byte, maxAnswerBytes+1)) // larger than the sidecar reads at once
			return
		}
		out = all
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
	json.NewEncoder(w).Encode(map[string]any{"snapshots": out})
}

// serveJobsIndex answers the jobs index's creation, multi-get and bulk requests as Elasticsearch
// does (recorded: facts-mget-*, facts-bulk-*): a multi-get without the index answers an error
// per document, a bulk creates it.
func (sim *simRepo) serveJobsIndex(w http.ResponseWriter, r *http.Request) {
	if sim.refuseDocs {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"type":"security_exception","reason":"action [indices:data/read/mget] is unauthorized"},"status":403}`)
		return
	}
	switch {
	case r.Method == http.MethodPut:
		sim.createJobsIndex()
		io.WriteString(w, `{"acknowledged":true}`)
	case sim.failMget && strings.HasSuffix(r.URL.Path, "/_mget"), sim.failBulk && strings.HasSuffix(r.URL.Path, "/_bulk"):
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"type":"es_rejected_execution_exception","reason":"rejected"},"status":503}`)
	case strings.HasSuffix(r.URL.Path, "/_mget"):
		var ask struct{ IDs []string }
		json.NewDecoder(r.Body).Decode(&ask)
		var docs []any
		for _, id := range ask.IDs {
			source, found := sim.docs[id]
			switch {
			case sim.docs == nil:
				docs = append(docs, map[string]any{"error": map[string]string{"type": "index_not_found_exception"}})
			case found:
				docs = append(docs, map[string]any{"found": true, "_source": source})
			default:
				docs = append(docs, map[string]any{"found": false})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"docs": docs})
	case strings.HasSuffix(r.URL.Path, "/_bulk"):
		sim.autoCreated = sim.autoCreated || sim.docs == nil
		sim.createJobsIndex()
		dec := json.NewDecoder(r.Body)
		for {
			var action map[string]struct {
				ID string `json:"_id"`
			}
			if dec.Decode(&action) != nil {
				break
			}
			if a, ok := action["index"]; ok {
				var doc json.RawMessage
				dec.Decode(&doc)
				sim.docs[a.ID] = doc
			}
			delete(sim.docs, action["delete"].ID)
		}
		io.WriteString(w, `{"errors":false}`)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// createJobsIndex creates the jobs index if there is none.
func (sim *simRepo) createJobsIndex() {
	if sim.docs == nil {
		sim.docs = map[string]json.RawMessage{}
	}
}

// count adds the snapshot_meta tasks of returning these snapshots' details.
func (sim *simRepo) count(snaps []snapshot) {
	for _, sn := range snaps {
		if sn.State != "IN_PROGRESS" {
			sim.tasks++
		}
	}
}

// finished is how many snapshots of the repository have finished: one read each to learn them.
func (sim *simRepo) finished() (n int) {
	for _, sn := range sim.snaps {
		if sn.State != "IN_PROGRESS" {
			n++
		}
	}
	return n
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
	finished := sim.finished()
	if total := sim.taskCount(); learned == 0 || learned >= finished || total != finished {
		t.Errorf("the failed scrape read %d snapshots' details, both %d; want some, then only the rest: %d in all", learned, total, finished)
	}
}

// TestColdReplicaReadsStoredFacts checks on simulated repositories that a replica that starts
// (or restarts) learns the finished snapshots' facts from the jobs index that another stored
// them in: its first scrape costs no snapshot_meta task, its first ?limit=5 at most 10, and both
// answer exactly what the replica that read the repository answers. A stored document that
// disagrees with the catalogue is not trusted (its snapshot is read again), and a jobs index
// that cannot be read costs reads, not answers.
func TestColdReplicaReadsStoredFacts(t *testing.T) {
	sim := newSimRepo(rand.New(rand.NewPCG(22, 3)), 300)
	fake := httptest.NewServer(http.HandlerFunc(sim.serve))
	defer fake.Close()
	replica := func() *server { return newTestServer(t, testConfig(fake.URL)) }
	finished := sim.finished()
	first := replica()
	want := gauges(scrape(t, first), "optimize_backup_backups", "state")
	wantList := serve(t, first, "GET", "/actuator/backups?limit=5", "", nil).Body.String()
	if tasks := sim.taskCount(); tasks < finished || len(sim.docs) != finished {
		t.Fatalf("the first replica cost %d tasks and stored %d documents; want %d of each", tasks, len(sim.docs), finished)
	}
	check := func(what string, maxScrape int) {
		t.Helper()
		srv := replica()
		before := sim.taskCount()
		if diff := gocmp.Diff(want, gauges(scrape(t, srv), "optimize_backup_backups", "state")); diff != "" {
			t.Errorf("%s: backups by state (-first replica +this one):\n%s", what, diff)
		}
		if tasks := sim.taskCount() - before; tasks > maxScrape {
			t.Errorf("%s: the first scrape cost %d snapshot_meta tasks; want at most %d", what, tasks, maxScrape)
		}
		before = sim.taskCount()
		if got := serve(t, srv, "GET", "/actuator/backups?limit=5", "", nil).Body.String(); got != wantList {
			t.Errorf("%s: ?limit=5 answered %s; want %s", what, got, wantList)
		}
		if tasks := sim.taskCount() - before; tasks > 10 {
			t.Errorf("%s: ?limit=5 cost %d snapshot_meta tasks; want at most 10", what, tasks)
		}
	}
	check("a replica that starts", 0)

	sim.mu.Lock()
	var tampered string
	for id, doc := range sim.docs {
		tampered, sim.docs[id] = id, []byte(strings.Replace(string(doc), `"state":"`, `"state":"X`, 1))
		break
	}
	sim.mu.Unlock()
	check("a replica that finds "+tampered+" disagreeing with the catalogue", 1)
	sim.mu.Lock()
	if !strings.Contains(string(sim.docs[tampered]), `"factsFormat":1`) || strings.Contains(string(sim.docs[tampered]), `"state":"X`) {
		t.Errorf("the disagreeing document was not stored again: %s", sim.docs[tampered])
	}
	sim.refuseDocs = true
	sim.mu.Unlock()
	check("a replica that may not read the jobs index", finished)
}

// TestFactsDocumentsFollowTheRepository checks on the recorded repository (catalogueBackups)
// what the jobs index holds of it: a replica that reads the facts stores one document per
// finished snapshot, with exactly the facts read; once a backup is deleted, the next scrape
// deletes exactly its documents; and a replica that starts reads them all in one multi-get,
// not from the repository, and reports the same.
func TestFactsDocumentsFollowTheRepository(t *testing.T) {
	fake := newFakeES(t, map[string]string{
		listAll: "catalogue|catalogue|catalogue-7-deleted", factsMget: "facts-mget-none", readFacts: "catalogue-facts",
		factsBulk: "facts-bulk-stored|facts-bulk-deleted", getDrill: "job-none",
	})
	srv := newTestServer(t, testConfig(fake.srv.URL))
	var facts getSnapshotsAnswer
	if err := json.Unmarshal(loadRecording(t, "catalogue-facts").Body, &facts); err != nil {
		t.Fatal(err)
	}
	var want []string
	var seven string
	// Stored in name order.
	slices.SortFunc(facts.Snapshots, func(a, b snapshot) int { return strings.Compare(a.Name, b.Name) })
	for _, sn := range facts.Snapshots {
		f := storedFacts{factsFormat, sn.Name, sn.UUID, sn.State, sn.StartMillis, sn.EndMillis, !strings.HasPrefix(sn.Name, "camunda_optimize_5_")}
		doc, _ := json.Marshal(f)
		want = append(want, fmt.Sprintf(`{"index":{"_id":"snapshot-facts-1-optimize-%s"}}`+"\n%s\n", sn.UUID, doc))
		if strings.HasPrefix(sn.Name, "camunda_optimize_7_") {
			seven = sn.UUID
		}
	}
	counts := gauges(scrape(t, srv), "optimize_backup_backups", "state")
	scrape(t, srv)
	afterDelete := gauges(scrape(t, srv), "optimize_backup_backups", "state")
	wantSent := []string{listAll, factsMget, readFacts, factsBulk, getDrill, listAll, getDrill, listAll, factsBulk, getDrill}
	if diff := gocmp.Diff(wantSent, fake.sent()); diff != "" {
		t.Errorf("three scrapes' Elasticsearch requests (-want +got):\n%s", diff)
	}
	bulks := fake.bodiesOf(factsBulk)
	if len(bulks) != 2 {
		t.Fatalf("got %d bulk requests; want 2", len(bulks))
	}
	if diff := gocmp.Diff(strings.Join(want, ""), bulks[0]); diff != "" {
		t.Errorf("stored facts (-want +got):\n%s", diff)
	}
	if got, wantDelete := bulks[1], fmt.Sprintf(`{"delete":{"_id":"snapshot-facts-1-optimize-%s"}}`+"\n", seven); got != wantDelete {
		t.Errorf("after backup 7 was deleted, the bulk request was %q; want %q", got, wantDelete)
	}
	if counts[stateIncomplete] != 1 || afterDelete[stateIncomplete] != 0 || afterDelete[stateCompleted] != counts[stateCompleted] {
		t.Errorf("backups by state: got %v, then %v once backup 7 was deleted", counts, afterDelete)
	}

	cold := newFakeES(t, map[string]string{listAll: "catalogue", factsMget: "facts-mget-found", getDrill: "job-none"})
	if got := gauges(scrape(t, newTestServer(t, testConfig(cold.srv.URL))), "optimize_backup_backups", "state"); !gocmp.Equal(counts, got) {
		t.Errorf("a replica that starts: backups by state %v; want %v", got, counts)
	}
	if diff := gocmp.Diff([]string{listAll, factsMget, getDrill}, cold.sent()); diff != "" {
		t.Errorf("a replica that starts: Elasticsearch requests (-want +got):\n%s", diff)
	}
}

// TestFactsStoreSurvivesFailures checks the facts documents where the jobs index misbehaves: a
// multi-get that fails does not let the bulk request create the jobs index with Elasticsearch's
// defaults; facts a bulk request could not store are stored by the next scrape, without reading
// the snapshots again; a document that does not decode costs the read of its snapshot only; and
// a backup deleted while others run has its documents deleted.
func TestFactsStoreSurvivesFailures(t *testing.T) {
	refused := newSimRepo(rand.New(rand.NewPCG(22, 5)), 50)
	refused.failMget = true
	fake := httptest.NewServer(http.HandlerFunc(refused.serve))
	scrape(t, newTestServer(t, testConfig(fake.URL)))
	fake.Close()
	if refused.autoCreated || len(refused.docs) != refused.finished() {
		t.Errorf("with the multi-get failing: the jobs index created by a bulk request: %v, %d documents stored; want it created first, and %d",
			refused.autoCreated, len(refused.docs), refused.finished())
	}

	sim := newSimRepo(rand.New(rand.NewPCG(22, 4)), 100)
	fake = httptest.NewServer(http.HandlerFunc(sim.serve))
	defer fake.Close()
	srv := newTestServer(t, testConfig(fake.URL))
	sim.failBulk = true
	want := gauges(scrape(t, srv), "optimize_backup_backups", "state")
	sim.mu.Lock()
	stored := len(sim.docs)
	sim.failBulk = false
	sim.mu.Unlock()
	learned := sim.taskCount()
	scrape(t, srv)
	if stored != 0 || len(sim.docs) != sim.finished() || sim.taskCount() != learned {
		t.Fatalf("bulk failing, then not: %d then %d documents stored (want 0, then %d), %d more tasks (want 0)",
			stored, len(sim.docs), sim.finished(), sim.taskCount()-learned)
	}

	sim.mu.Lock()
	var broken string
	for id := range sim.docs {
		broken, sim.docs[id] = id, json.RawMessage(`{"factsFormat":1,"startMillis":"not a number"}`)
		break
	}
	sim.mu.Unlock()
	before := sim.taskCount()
	if got := gauges(scrape(t, newTestServer(t, testConfig(fake.URL))), "optimize_backup_backups", "state"); !gocmp.Equal(got, want) {
		t.Errorf("a replica that starts with %s undecodable: backups by state %v; want %v", broken, got, want)
	}
	if tasks := sim.taskCount() - before; tasks != 1 {
		t.Errorf("a replica that starts with one undecodable document: %d snapshot_meta tasks; want 1", tasks)
	}

	sim.mu.Lock()
	i := slices.IndexFunc(sim.snaps, func(sn snapshot) bool { return sn.State == "SUCCESS" })
	deleted := sim.snaps[i]
	sim.snaps = slices.Delete(sim.snaps, i, i+1)
	running := slices.ContainsFunc(sim.snaps, func(sn snapshot) bool { return sn.State == "IN_PROGRESS" })
	sim.mu.Unlock()
	scrape(t, srv)
	sim.mu.Lock()
	defer sim.mu.Unlock()
	if _, left := sim.docs[srv.factsDocID(deleted.UUID)]; left || !running {
		t.Errorf("snapshot %s deleted while others ran (%v): its document is still stored", deleted.Name, running)
	}
}

// TestListTooLargeForOneAnswer checks that a repository whose list of every snapshot is larger
// than the sidecar reads at once is listed all the same, from the catalogue and the snapshots
// read by name, one read each besides the answer that was too large: the same list as one
// answer gives.
func TestListTooLargeForOneAnswer(t *testing.T) {
	sim := newSimRepo(rand.New(rand.NewPCG(22, 6)), 60)
	fake := httptest.NewServer(http.HandlerFunc(sim.serve))
	defer fake.Close()
	srv := newTestServer(t, testConfig(fake.URL))
	srv.now = func() time.Time { return testNow }
	want := serve(t, srv, "GET", "/actuator/backups", "", nil)
	sim.mu.Lock()
	sim.hugeList, sim.tasks = true, 0
	sim.mu.Unlock()
	got := serve(t, srv, "GET", "/actuator/backups", "", nil)
	if got.Code != 200 || got.Body.String() != want.Body.String() {
		t.Errorf("too large for one answer: got %d %.300s; want %d %.300s", got.Code, got.Body, want.Code, want.Body)
	}
	finished := sim.finished()
	if tasks := sim.taskCount(); tasks != finished {
		t.Errorf("read by name: %d snapshot_meta tasks; want %d, one per finished snapshot", tasks, finished)
	}
}
