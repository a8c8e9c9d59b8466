package main

// Regression tests from a hostile review of the crash handling of restores and drills: each
// states a scenario where the first version deleted what it did not own, tore down a good
// restore, waited in silence, or broke the operator's way out (DELETE .../restore).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// scriptES is an in-memory Elasticsearch: the jobs index is memDocs, every other request is
// answered by answer(method+" "+path, query, body), and every request is logged.
type scriptES struct {
	mem    *memDocs
	mu     sync.Mutex
	answer func(key string, r *http.Request, body string) (int, string)
	log    []string
}

func (e *scriptES) Perform(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/_doc/") || r.URL.Path == "/jobs" {
		return e.mem.Perform(r)
	}
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
	}
	key := r.Method + " " + r.URL.Path
	e.mu.Lock()
	e.log = append(e.log, key+" "+string(body))
	e.mu.Unlock()
	status, answer := e.answer(key, r, string(body))
	return &http.Response{StatusCode: status, Header: http.Header{"X-Elastic-Product": {"Elasticsearch"}, "Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(answer)), Request: r}, nil
}

// unexpected is the answer to a request a scripted test does not expect.
func unexpected(key string) (int, string) {
	return 418, `{"error":{"type":"unexpected","reason":"` + key + `"},"status":418}`
}

// resolved is a resolve-index answer naming ix, an existing index.
func resolved(ix string) (int, string) { return 200, `{"indices":[{"name":"` + ix + `"}]}` }

// settingsOf is an index-settings answer: ix has this UUID and no creation date.
func settingsOf(ix, uuid string) (int, string) {
	return 200, `{"` + ix + `":{"settings":{"index.uuid":"` + uuid + `"}}}`
}

// blockWatch is a scripted Elasticsearch that answers write-block changes of ix and tells whether
// ix is blocked now (set at first, as a stuck job left it).
func blockWatch(ix string) (*scriptES, func() bool) {
	var mu sync.Mutex
	blocked := true
	es := &scriptES{mem: newMemDocs()}
	es.answer = func(key string, r *http.Request, body string) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if key == "PUT /"+ix+"/_settings" {
			blocked = strings.Contains(body, "true")
			return 200, `{"acknowledged":true}`
		}
		return unexpected(key)
	}
	return es, func() bool { mu.Lock(); defer mu.Unlock(); return blocked }
}

// sent are the logged requests that start with prefix ("DELETE /x", "PUT /x/_settings").
func (e *scriptES) sent(prefix string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, l := range e.log {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// scriptServer is a sidecar on es with short polls and the given repairs.
func scriptServer(t *testing.T, es *scriptES, repairs int) *server {
	cfg := config{IndexPrefix: "optimize", JobsIndex: "jobs", Repository: "repo", ESTimeout: 30 * time.Second,
		PollInterval: time.Millisecond, RestoreWaitTimeout: 2 * time.Second, RestoreStallTimeout: 10 * time.Minute, RestoreRepairs: repairs}
	return newServer(cfg, esClients{read: es, write: es, restore: es}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
}

// partJob stores and returns a running restore job of one part holding index ix, at step
// restore-part-1, with restored recorded (nil: none).
func partJob(t *testing.T, s *server, ix string, restored map[string]string) *jobRun {
	t.Helper()
	doc := jobDoc{restoreJob: restoreJob{BackupID: "1", State: restoreRunning, Step: restorePartStep(1), StartTime: ptr(time.Now().Add(-time.Hour))}, Repository: "repo",
		Plan:     restorePlan{Parts: []planPart{{Snapshot: "snap-1", UUID: "su", Indices: []string{ix}, Shards: 1}}},
		Restored: restored}
	doc.Snapshots = []restoreProgress{{SnapshotName: "snap-1", State: restoreRunning, ShardsTotal: 1}}
	run := s.newJobRun(doc, jobVersion{})
	if err := run.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return run
}

// clusterState is a cluster-state answer for one index: its UUID, its primary's routing entry
// (JSON) and the indices a restore in progress holds.
func clusterState(ix, uuid, primary string, restoring ...string) string {
	restore := ""
	if len(restoring) > 0 {
		restore = fmt.Sprintf(`,"restore":{"snapshots":[{"indices":["%s"]}]}`, strings.Join(restoring, `","`))
	}
	// Its primary started once (in_sync_allocations): a restored index, not one cut off.
	return fmt.Sprintf(`{"metadata":{"indices":{"%s":{"settings":{"index":{"uuid":"%s"}},"in_sync_allocations":{"0":["a1"]}}}},"routing_table":{"indices":{"%s":{"shards":{"0":[%s]}}}}%s}`,
		ix, uuid, ix, primary, restore)
}

// TestReviewNameOnlyOwnershipDeletesAnIndexSomeoneElseCreated: the job takes an index for its
// own by its NAME in two places, and then deletes it with the UUID read from that very index.
//   - refused: the job finds optimize-metadata_v3 missing, records it in Restoring and asks
//     for the restore; Elasticsearch refuses ("already exists": Optimize, or anything, created
//     the index in between), and Restoring keeps the name. Next round the index exists without
//     a recovery and without a restore in progress, so justRestored judges it failed (owned ==
//     nil) with the UUID of the index it judges.
//   - answer lost: the restore's answer is lost (a gateway's 502) and the master never applied
//     it; appeared() sees an index of the name within one deadline (Optimize's) and
//     restoreMissing records ITS UUID in Restored: from then on it counts as the job's.
//
// Either way, when the new index's primary cannot be allocated (a full disk), discard would
// delete an index this job never created: its creation date (after the job began) says so.
func TestReviewNameOnlyOwnershipDeletesAnIndexSomeoneElseCreated(t *testing.T) {
	const ix = "optimize-metadata_v3"
	for name, restoreAnswer := range map[string]string{
		"refused":     `{"error":{"type":"snapshot_restore_exception","reason":"[repo:snap-1/su] cannot restore index [` + ix + `] because an open index with same name already exists in the cluster"},"status":500}`,
		"answer lost": `<html>502 Bad Gateway</html>`,
	} {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			created := false // Optimize created the index (empty, new UUID) right after the job looked
			es := &scriptES{mem: newMemDocs()}
			es.answer = func(key string, r *http.Request, body string) (int, string) {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case key == "GET /_resolve/index/"+ix && !created:
					return 200, `{"indices":[]}`
				case key == "GET /_resolve/index/"+ix:
					return resolved(ix)
				case key == "POST /_snapshot/repo/snap-1/_restore":
					created = true
					if strings.HasPrefix(restoreAnswer, "<html>") {
						return 502, restoreAnswer
					}
					return 500, restoreAnswer
				case key == "GET /"+ix+"/_recovery":
					return 200, `{}` // its primary is not allocated yet
				case strings.HasPrefix(key, "GET /_cluster/state/"):
					// Its primary cannot be allocated (a full disk, say): only ownership protects it.
					return 200, clusterState(ix, "CREATED-BY-OPTIMIZE", `{"state":"UNASSIGNED","primary":true,"unassigned_info":{"reason":"ALLOCATION_FAILED","failed_attempts":5,"allocation_status":"deciders_no"}}`)
				case key == "GET /"+ix+"/_settings/index.uuid,index.blocks.write,index.creation_date":
					// Created a moment ago, during the job: not restored from its snapshot.
					return 200, fmt.Sprintf(`{"%s":{"settings":{"index.uuid":"CREATED-BY-OPTIMIZE","index.creation_date":"%d"}}}`, ix, time.Now().UnixMilli())
				case key == "DELETE /"+ix:
					return 200, `{"acknowledged":true}`
				}
				return unexpected(key)
			}
			s := scriptServer(t, es, 3)
			run := partJob(t, s, ix, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := run.restorePartRepairing(ctx, 0)
			if deleted := es.sent("DELETE /" + ix); len(deleted) > 0 {
				t.Errorf("the job deleted %s, an index it never created (Optimize did, after the job's restore request): %d deletes; the job ended with %v", ix, len(deleted), err)
			}
		})
	}
}

// TestReviewRestartedClusterIsNotFailed: after a normal full-cluster restart (no crash damage),
// the primaries of every index stay UNASSIGNED for a while (reason CLUSTER_RECOVERED) while
// the master fetches the shard stores and then allocates at most
// node_initial_primaries_recoveries (4) per node at a time; the restore's entry in the cluster
// state is gone (it is not kept across a full restart). Elasticsearch allocates them from their
// local store by itself. failedIndices calls such an index failed because no restore holds it,
// and the job deletes an index that was completely restored before the restart; with
// OPTIMIZE_BACKUP_RESTORE_REPAIRS=0 it then ends FAILED: a good restore torn down.
func TestReviewRestartedClusterIsNotFailed(t *testing.T) {
	const ix, uuid = "optimize-metadata_v3", "RESTORED-BY-THE-JOB"
	var mu sync.Mutex
	stateReads := 0
	es := &scriptES{mem: newMemDocs()}
	es.answer = func(key string, r *http.Request, body string) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case key == "GET /_resolve/index/"+ix:
			return resolved(ix)
		case key == "GET /"+ix+"/_settings/index.uuid,index.blocks.write,index.creation_date":
			return settingsOf(ix, uuid)
		case key == "GET /"+ix+"/_recovery" && stateReads < 2:
			return 200, `{}` // waiting for its turn to be allocated
		case key == "GET /"+ix+"/_recovery":
			return 200, `{"` + ix + `":{"shards":[{"id":0,"type":"EXISTING_STORE","stage":"DONE","primary":true,"index":{"size":{"total_in_bytes":100,"recovered_in_bytes":0}}}]}}`
		case strings.HasPrefix(key, "GET /_cluster/state/"):
			stateReads++
			return 200, clusterState(ix, uuid, `{"state":"UNASSIGNED","primary":true,"unassigned_info":{"reason":"CLUSTER_RECOVERED","delayed":false,"allocation_status":"fetching_shard_data"}}`)
		case key == "DELETE /"+ix:
			return 200, `{"acknowledged":true}`
		}
		return unexpected(key)
	}
	s := scriptServer(t, es, 0)
	run := partJob(t, s, ix, map[string]string{ix: uuid})
	err := run.restorePartRepairing(context.Background(), 0)
	if deleted := es.sent("DELETE /" + ix); err != nil || len(deleted) > 0 {
		t.Errorf("an index restored before a normal restart, waiting for its turn to open from its local store: got %v, deleted %v; want the part done, nothing deleted", err, deleted)
	}
}

// TestReviewShardsElasticsearchStillAllocates: primaries that are unassigned but that
// Elasticsearch will still allocate by itself, as the cluster state shows them. None of them
// is an index Elasticsearch "cannot recover"; failedIndices calls each failed, and the job
// deletes and restores it again (or, with repairs off or used up, FAILs the restore).
func TestReviewShardsElasticsearchStillAllocates(t *testing.T) {
	const ix, uuid = "optimize-metadata_v3", "u"
	for _, tc := range []struct{ name, primary string }{
		{"node left, allocation delayed (index.unassigned.node_left.delayed_timeout, 1m)",
			`{"state":"UNASSIGNED","primary":true,"unassigned_info":{"reason":"NODE_LEFT","delayed":true,"allocation_status":"no_attempt","details":"node_left [n2]"}}`},
		{"full restart, store being fetched",
			`{"state":"UNASSIGNED","primary":true,"unassigned_info":{"reason":"CLUSTER_RECOVERED","delayed":false,"allocation_status":"fetching_shard_data"}}`},
		{"full restart, throttled (node_initial_primaries_recoveries)",
			`{"state":"UNASSIGNED","primary":true,"unassigned_info":{"reason":"CLUSTER_RECOVERED","delayed":false,"allocation_status":"throttled"}}`},
		{"restore in progress, 1st of 5 allocation attempts failed (a repository read timed out), retry throttled",
			`{"state":"UNASSIGNED","primary":true,"unassigned_info":{"reason":"ALLOCATION_FAILED","failed_attempts":1,"delayed":false,"allocation_status":"throttled","details":"failed shard on node [n1]: failed recovery, failure RecoveryFailedException[...]; nested: IOException[Read timed out]"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := &scriptES{mem: newMemDocs(), answer: func(key string, r *http.Request, body string) (int, string) {
				return 200, clusterStateFor(tc.name, ix, uuid, tc.primary)
			}}
			s := scriptServer(t, es, 3)
			health, err := s.indicesHealth(context.Background(), []string{ix})
			if err != nil {
				t.Fatal(err)
			}
			if err := failedIndices([]string{ix}, health, map[string]string{ix: uuid}, time.Now(), 2*time.Minute); err != nil {
				t.Errorf("got %v; want no failure: Elasticsearch allocates this primary by itself", err)
			}
		})
	}
}

// clusterStateFor: the ALLOCATION_FAILED case has its restore still in progress.
func clusterStateFor(name, ix, uuid, primary string) string {
	if strings.HasPrefix(name, "restore in progress") {
		return clusterState(ix, uuid, primary, ix)
	}
	return clusterState(ix, uuid, primary)
}

// TestReviewEndRestoreLiftsTheNextJobsBlock: DELETE .../restore lifts the write block, and lifts
// it again one Elasticsearch deadline later without looking at the job document. A restore
// started in between (the operator ends the wrong job and starts the right one, on another
// replica) sets its own write block for its safety backup; the late lift removes it while that
// safety backup runs, so writes made during it are lost by the restore.
func TestReviewEndRestoreLiftsTheNextJobsBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ix = "optimize-metadata_v3"
		es, blocked := blockWatch(ix)
		operator, owner := scriptServer(t, es, 3), scriptServer(t, es, 3)
		stuck := jobDoc{restoreJob: restoreJob{BackupID: "1", State: restoreRunning, Step: stepSafety}, Repository: "repo",
			Plan: restorePlan{Replace: []string{ix}}, WriteBlocked: true}
		old := owner.newJobRun(stuck, jobVersion{})
		if err := old.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := operator.endRestore(context.Background(), "1", true); err != nil {
			t.Fatal(err)
		}
		// The operator starts the right restore at once; its safety step blocks the indices.
		stored, err := owner.loadJob(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ver := stored.ver
		next := owner.newJobRun(jobDoc{restoreJob: restoreJob{BackupID: "2", State: restoreRunning, Step: stepSafety}, Repository: "repo",
			Plan: restorePlan{Replace: []string{ix}}, WriteBlocked: true}, ver)
		if err := next.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := owner.setWriteBlock(context.Background(), []string{ix}, true, next.guard); err != nil {
			t.Fatal(err)
		}
		time.Sleep(operator.cfg.ESTimeout + 2*time.Second) // the ended job's second lift
		synctest.Wait()
		if !blocked() {
			t.Errorf("the write block of the restore of backup 2, set for its safety backup, was lifted by the end of the restore of backup 1")
		}
	})
}

// TestReviewEndedJobStillDeletes: DELETE .../restore answers that nothing more is deleted or
// restored, but the owner learns of the end only at its next write (its heartbeat, up to 5 s
// later): guard() only looks at the age of its lease, which is fresh. An owner that found a
// failed index just then deletes it after the operator was told the job ended (and one in
// restoreMissing sends its restore request likewise).
func TestReviewEndedJobStillDeletes(t *testing.T) {
	const ix, uuid = "optimize-metadata_v3", "u"
	es := &scriptES{mem: newMemDocs()}
	es.answer = func(key string, r *http.Request, body string) (int, string) {
		switch key {
		case "GET /" + ix + "/_settings/index.uuid,index.blocks.write,index.creation_date":
			return settingsOf(ix, uuid)
		case "DELETE /" + ix:
			return 200, `{"acknowledged":true}`
		}
		return unexpected(key)
	}
	owner, operator := scriptServer(t, es, 3), scriptServer(t, es, 3)
	run := partJob(t, owner, ix, map[string]string{ix: uuid})
	if _, err := operator.endRestore(context.Background(), "1", true); err != nil {
		t.Fatal(err)
	}
	err := run.discard(context.Background(), []failedIndex{{Index: ix, UUID: uuid, Reason: "test"}})
	if deleted := es.sent("DELETE /" + ix); len(deleted) > 0 {
		t.Errorf("after DELETE .../restore answered that nothing more is deleted, the owner deleted %s (then: %v)", ix, err)
	}
}

// TestReviewDrillNeverCountsMovedShards: a drill follows its restore (after a lost answer or a
// crash) with restored == nil, which followRecovery documents as "all of them are mine" and
// failedIndices reads so; restoreProgressOf reads nil as "none restored", so a temporary
// index whose primary has since restarted from its store (EXISTING_STORE) or relocated (PEER)
// never counts as done: the drill waits for the stall timeout and FAILS a good restore, with
// "made no progress".
func TestReviewDrillNeverCountsMovedShards(t *testing.T) {
	part := planPart{Snapshot: "snap-1", Indices: []string{"drill-optimize-metadata_v3"}, Shards: 1}
	rec := recoveryShards{"drill-optimize-metadata_v3": {Shards: []recoveryShard{{ID: 0, Type: "EXISTING_STORE", Stage: "DONE", Primary: true}}}}
	if p := restoreProgressOf(part, rec, nil); p.State != restoreCompleted {
		t.Errorf("a drill's temporary index, recovered from its store after a restart: got %+v; want it counted (nil restored means all are the caller's)", p)
	}
}

// TestReviewForeignIndexOfTheNameCompletesThePart: restoreProgressOf counts a primary that moved
// or restarted (PEER, EXISTING_STORE) for any index whose NAME the job recorded, whatever its
// UUID. If the job's index was deleted and another created under its name (Optimize started
// too early), and that one's primary restarted or relocated, the part counts as restored and
// the job ends COMPLETED with the other index in place of the backup's. failedIndices skips
// that index silently ("not an index the caller created") instead of failing the job.
func TestReviewForeignIndexOfTheNameCompletesThePart(t *testing.T) {
	const ix = "optimize-metadata_v3"
	es := &scriptES{mem: newMemDocs()}
	es.answer = func(key string, r *http.Request, body string) (int, string) {
		switch {
		case key == "GET /"+ix+"/_recovery":
			return 200, `{"` + ix + `":{"shards":[{"id":0,"type":"PEER","stage":"DONE","primary":true,"index":{"size":{"total_in_bytes":100,"recovered_in_bytes":100}}}]}}`
		case strings.HasPrefix(key, "GET /_cluster/state/"):
			return 200, clusterState(ix, "ANOTHER-INDEX", `{"state":"STARTED","primary":true}`)
		}
		return unexpected(key)
	}
	s := scriptServer(t, es, 3)
	part := planPart{Snapshot: "snap-1", Indices: []string{ix}, Shards: 1}
	err := s.followRecovery(context.Background(), s.log, part, map[string]string{ix: "THE-JOBS-INDEX"}, newStallWatch("test", 0), func(restoreProgress) error { return nil })
	if err == nil {
		t.Errorf("the part's only index is another index of the name (another UUID): got the part done; want an error naming it")
	}
}

// TestReviewStallNeverFiresWithPassingFaults: OPTIMIZE_BACKUP_RESTORE_STALL_TIMEOUT is kept by
// waitUntil, which restorePart's retrying starts afresh after every passing fault (a 429, a
// master re-election, a lost answer). A recovery stuck for good, on a cluster that answers
// one read every five minutes with a 429 (circuit breaker), never stalls: the job waits for
// OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT (6 h), and its log's "since" (and the status's
// waitingSince) restart at every fault, so they never show how long it has been stuck.
func TestReviewStallNeverFiresWithPassingFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ix, uuid = "optimize-metadata_v3", "u"
		var mu sync.Mutex
		lastFault := time.Now()
		es := &scriptES{mem: newMemDocs()}
		es.answer = func(key string, r *http.Request, body string) (int, string) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case key == "GET /_resolve/index/"+ix:
				return resolved(ix)
			case key == "GET /"+ix+"/_settings/index.uuid,index.blocks.write,index.creation_date":
				return settingsOf(ix, uuid)
			case key == "GET /"+ix+"/_recovery":
				return 200, `{"` + ix + `":{"shards":[{"id":0,"type":"SNAPSHOT","stage":"INDEX","primary":true,"source":{"snapshot":"snap-1"},"index":{"size":{"total_in_bytes":100,"recovered_in_bytes":50}}}]}}`
			case strings.HasPrefix(key, "GET /_cluster/state/"):
				if time.Since(lastFault) > 5*time.Minute { // one passing fault every five minutes
					lastFault = time.Now()
					return 429, `{"error":{"type":"circuit_breaking_exception","reason":"[parent] Data too large"},"status":429}`
				}
				return 200, clusterState(ix, uuid, `{"state":"INITIALIZING","primary":true}`, ix)
			}
			return unexpected(key)
		}
		s := scriptServer(t, es, 3)
		s.cfg.RestoreWaitTimeout = 6 * time.Hour
		s.cfg.PollInterval = 10 * time.Second
		run := partJob(t, s, ix, map[string]string{ix: uuid})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The lease must stay fresh for the owner to act: renew it as run() would.
		go run.renew(ctx)
		began := time.Now()
		err := run.restorePartRepairing(ctx, 0)
		if took := time.Since(began); took > 30*time.Minute {
			t.Errorf("a recovery stuck at 50 of 100 bytes: ended after %v (%v); want the stall timeout (10m) to end it", took.Round(time.Minute), err)
		}
		cancel()
	})
}

// TestReviewDrillLostRestoreSaysDeleted: a drill's restore (wait_for_completion) whose answer is
// lost because the node died before the master applied it leaves no temporary index at all. The
// drill must say that the restore did not start, not that something deleted indices that never
// existed.
func TestReviewDrillLostRestoreSaysDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		es := &scriptES{mem: newMemDocs()}
		es.answer = func(key string, r *http.Request, body string) (int, string) {
			switch {
			case strings.HasSuffix(key, "/_restore"):
				return 502, `<html>502 Bad Gateway</html>`
			case strings.HasPrefix(key, "GET /_resolve/index/"):
				return 200, `{"indices":[]}`
			}
			return unexpected(key)
		}
		s := scriptServer(t, es, 3)
		s.cfg.RestoreWaitTimeout = time.Hour // longer than the wait for the indices to appear
		doc := drillDoc{drillResult: drillResult{BackupID: "1", State: drillRunning,
			Snapshots: []drillSnapshot{{Snapshot: "snap-1", ShardsTotal: 1}},
			Indices:   []drillIndex{{Snapshot: "snap-1", Index: "optimize-metadata_v3", TemporaryIndex: s.drillIndexPrefix() + "optimize-metadata_v3"}}}, Repository: "repo"}
		run := s.newDrillRun(doc, jobVersion{}, backupInfo{})
		if err := run.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		err := run.restorePart(context.Background(), 0, doc.Snapshots[0])
		if err == nil || strings.Contains(err.Error(), "deleted") || !strings.Contains(err.Error(), "did not start") {
			t.Errorf("a drill restore that never started: got %v; want it said that the restore did not start (no temporary index appeared), not that something deleted them", err)
		}
	})
}
