package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
)

// repoLocation is the directory of the fs repository name.
func (es realES) repoLocation(name string) string {
	es.t.Helper()
	var answer map[string]struct {
		Settings struct{ Location string }
	}
	if err := json.Unmarshal(es.must("GET", "/_snapshot/"+name, ""), &answer); err != nil || answer[name].Settings.Location == "" {
		es.t.Fatalf("the location of repository %s: %v %v", name, err, answer)
	}
	return answer[name].Settings.Location
}

// snapshotMetaTasks is how many tasks Elasticsearch's snapshot_meta thread pool has completed,
// summed over the nodes: one per snapshot whose details it loaded from the blob store (on S3,
// GCS or Azure, a remote GET each).
func (es realES) snapshotMetaTasks() int {
	es.t.Helper()
	var stats struct {
		Nodes map[string]struct {
			ThreadPool map[string]struct{ Completed int } `json:"thread_pool"`
		}
	}
	if err := json.Unmarshal(es.must("GET", "/_nodes/stats/thread_pool?filter_path=nodes.*.thread_pool.snapshot_meta.completed", ""), &stats); err != nil {
		es.t.Fatal(err)
	}
	total := 0
	for _, n := range stats.Nodes {
		total += n.ThreadPool["snapshot_meta"].Completed
	}
	return total
}

// takeBackups takes both snapshots of each of these backups of one small index in repo,
// 8 at a time (so that many start on the same tick of Elasticsearch's 200 ms clock), with
// metadata prefix as the sidecar writes it, or none (as Optimize's own) when prefix is "".
func (es realES) takeBackups(repo, index, prefix string, ids []string) {
	es.t.Helper()
	work := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for id := range work {
				for part := 1; part <= 2; part++ {
					meta := ""
					if prefix != "" {
						meta = fmt.Sprintf(`,"metadata":{"version":"3.9.0","partNo":%d,"partCount":2,"createdBy":"optimize-backup","indexPrefix":%q}`, part, prefix)
					}
					status, body := es.do("PUT", "/_snapshot/"+repo+"/"+snapshotName(id, "3.9.0", part)+"?wait_for_completion=true",
						fmt.Sprintf(`{"indices":[%q],"include_global_state":false%s}`, index, meta))
					if status != 200 {
						es.t.Errorf("snapshot %s part %d: got %d %s", id, part, status, body)
					}
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
}

// TestIntegrationCatalogueCosts checks on the real node, in a repository of 30 backups (26 of
// this installation, 2 made as Optimize makes them, without metadata, 2 of optimize-east; many
// started on the same clock tick), what the scrape and ?limit cost in snapshot details read
// from the blob store, and that they answer what a full read does: once the sidecar knows the
// repository, a scrape reads at most 10 and ?limit=5 at most 2×5+10; a second replica learns
// the repository from the jobs index, for as little; ?limit=N is the whole list's first N; the
// counts by state are those of every snapshot read in full; a deleted backup's stored facts go.
func TestIntegrationCatalogueCosts(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("it-catalogue")
	var own []string
	for i := 1; i <= 26; i++ {
		own = append(own, fmt.Sprint(i*7%31))
	}
	es.takeBackups(repo, "optimize-import-index_v3", "optimize", own)
	es.takeBackups(repo, "optimize-import-index_v3", "", []string{"nightly", "nightly_1"})
	es.takeBackups(repo, "optimize-east-import-index_v3", "optimize-east", []string{"40", "41"})
	sc := startSidecar(t, es.sidecarEnv(repo))

	reads := watchBlobReads(t, es.repoLocation(repo))
	// cost counts the snapshot details read from the blob store while f runs. On Elasticsearch it
	// checks the count against the snapshot_meta pool's: one task per snapshot's details.
	cost := func(what string, f func()) int {
		before, tasksBefore := reads.count(), es.snapshotMetaTasks()
		f()
		n, tasks := reads.count()-before, es.snapshotMetaTasks()-tasksBefore
		t.Logf("%s: %d snapshot details read (snap-*.dat), %d snapshot_meta tasks", what, n, tasks)
		if testDB() == databaseElasticsearch && tasks != n {
			t.Errorf("%s: %d snap-*.dat opened but %d snapshot_meta tasks; want as many", what, n, tasks)
		}
		return n
	}
	var counts map[string]float64
	scrapeCountsOf := func(sc sidecar) {
		_, body := sc.call("GET", "/actuator/prometheus", "")
		counts = map[string]float64{}
		for _, line := range strings.Split(string(body), "\n") {
			var state string
			var n float64
			if _, err := fmt.Sscanf(line, "optimize_backup_backups{state=%q} %g", &state, &n); err == nil {
				counts[state] = n
			}
		}
	}
	scrapeCounts := func() { scrapeCountsOf(sc) }
	if tasks := cost("first scrape (the process learns the repository)", scrapeCounts); tasks > 60 {
		t.Errorf("first scrape: read %d snapshots' details; want at most one per snapshot (60)", tasks)
	}
	if tasks := cost("second scrape", scrapeCounts); tasks > 10 {
		t.Errorf("second scrape: read %d snapshots' details; want at most 10", tasks)
	}
	if want := fullReadCounts(t, es, repo); !maps.Equal(counts, want) {
		t.Errorf("scrape counts %v; want %v, as a full read of every snapshot tells", counts, want)
	}
	if tasks := cost("?limit=5", func() { sc.call("GET", "/actuator/backups?limit=5", "") }); tasks > 2*5+10 {
		t.Errorf("?limit=5: read %d snapshots' details; want at most 20", tasks)
	}
	_, wholeBody := sc.call("GET", "/actuator/backups", "")
	var whole []json.RawMessage
	if err := json.Unmarshal(wholeBody, &whole); err != nil || len(whole) != 30 {
		t.Fatalf("list: got %v %.300s; want 30 backups", err, wholeBody)
	}
	for _, n := range []int{1, 2, 5, 13, 29, 30, 31} {
		limitIsListsFirst(t, sc, whole, n)
	}

	// A replica that starts (or this one, restarted) learns the facts from the jobs index.
	learned := counts
	replica := startSidecar(t, es.sidecarEnv(repo))
	if tasks := cost("a second replica's first scrape", func() { scrapeCountsOf(replica) }); tasks > 10 {
		t.Errorf("a second replica's first scrape: read %d snapshots' details; want at most 10", tasks)
	}
	if !maps.Equal(counts, learned) {
		t.Errorf("a second replica's counts %v; want the first one's %v", counts, learned)
	}
	if tasks := cost("its first ?limit=5", func() { limitIsListsFirst(t, replica, whole, 5) }); tasks > 2*5+10 {
		t.Errorf("a second replica's first ?limit=5: read %d snapshots' details; want at most 20", tasks)
	}
	factsGoWithTheirBackup(t, es, sc, repo, own[0])
}

// limitIsListsFirst checks that the sidecar's ?limit=n answers the whole list's first n.
func limitIsListsFirst(t *testing.T, sc sidecar, whole []json.RawMessage, n int) {
	t.Helper()
	_, body := sc.call("GET", fmt.Sprintf("/actuator/backups?limit=%d", n), "")
	var got []json.RawMessage
	json.Unmarshal(body, &got)
	if diff := gocmp.Diff(fmt.Sprintf("%s", whole[:min(n, len(whole))]), fmt.Sprintf("%s", got)); diff != "" {
		t.Errorf("%s: ?limit=%d (-the list's first %d +got):\n%s", sc.url, n, n, diff)
	}
}

// srvFactsDocID is the ID of the facts document of the snapshot with this UUID, for the prefix
// optimize.
func srvFactsDocID(uuid string) string {
	return fmt.Sprintf("snapshot-facts-%d-optimize-%s", factsFormat, uuid)
}

// factsGoWithTheirBackup deletes backup id through the sidecar and checks that the next scrape
// deletes the facts documents of its snapshots from the jobs index, and only those.
func factsGoWithTheirBackup(t *testing.T, es realES, sc sidecar, repo, id string) {
	docs := func() map[string]bool {
		var answer struct {
			Hits struct {
				Hits []struct {
					ID string `json:"_id"`
				}
			}
		}
		json.Unmarshal(es.must("GET", "/camunda-optimize-backup-jobs/_search?size=1000&q=factsFormat:1&filter_path=hits.hits._id", ""), &answer)
		ids := map[string]bool{}
		for _, h := range answer.Hits.Hits {
			ids[h.ID] = true
		}
		return ids
	}
	es.must("POST", "/camunda-optimize-backup-jobs/_refresh", "")
	before := docs()
	var gone []string
	for _, sn := range es.snapshots(repo, "camunda_optimize_"+id+"_*") {
		gone = append(gone, srvFactsDocID(sn.UUID))
	}
	if len(gone) != 2 || !before[gone[0]] || !before[gone[1]] {
		t.Fatalf("backup %s's facts documents %v are not all stored (%d stored)", id, gone, len(before))
	}
	if status, body := sc.call("DELETE", "/actuator/backups/"+id, ""); status != 204 {
		t.Fatalf("DELETE backup %s: got %d %s; want 204", id, status, body)
	}
	sc.call("GET", "/actuator/prometheus", "")
	es.must("POST", "/camunda-optimize-backup-jobs/_refresh", "")
	after := docs()
	for _, doc := range gone {
		delete(before, doc)
	}
	if !maps.Equal(before, after) {
		t.Errorf("facts documents after backup %s was deleted: %d, want %d (all but its %v)", id, len(after), len(before), gone)
	}
}

// fullReadCounts are this installation's backups in repo by state as the scrape counted them
// before the catalogue: every snapshot read in full, a backup left out when a snapshot is not
// this installation's (isOwnSnapshot).
func fullReadCounts(t *testing.T, es realES, repo string) map[string]float64 {
	srv := newTestServer(t, testConfig(es.url))
	srv.now = time.Now
	byID := map[string][]snapshot{}
	for _, sn := range es.snapshots(repo, "camunda_optimize_*") {
		id, _, _, _, _ := parseSnapshotName(sn.Name)
		byID[id] = append(byID[id], sn)
	}
	counts := map[string]float64{}
	for _, state := range []string{stateCompleted, stateInProgress, stateFailed, stateIncomplete, stateIncompatible} {
		counts[state] = 0
	}
	for id, snaps := range byID {
		if !slices.ContainsFunc(snaps, func(sn snapshot) bool { return !srv.isOwnSnapshot(sn) }) {
			counts[backupState(id, snaps, false, srv.now(), srv.cfg.Part2Grace).State]++
		}
	}
	return counts
}
