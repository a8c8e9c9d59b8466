package main

// Regression tests from a second hostile review of the crash handling of restores (issue 20),
// after 6d3ba1b: each states a scenario where the job still deletes or restores what it should
// not, refuses to repair what it restored, waits in silence past its stall timeout, or leaves a
// write block an operator's end promised to lift. Each fails on 6d3ba1b.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestReview20bNodeLeftPrimaryIsNotFailed: failedIndices calls every primary whose
// allocation_status is no_valid_shard_copy failed. Elasticsearch says that also when the node
// holding the only copy is just not in the cluster right now: a data node restarting (a pod
// rescheduled, a rolling upgrade), or, in a full-cluster restart, a node that has not joined
// yet ("cannot allocate because a previous copy of the primary shard existed but can no longer
// be found on the nodes in the cluster"). A restored index has no started replica while its
// part is still restoring, so its primary is the only copy. When the node is back, Elasticsearch
// opens the copy from its store by itself. The job instead deletes an index it restored
// completely and restores it again; with OPTIMIZE_BACKUP_RESTORE_REPAIRS=0 (or repairs used up)
// it ends FAILED: a good restore torn down by a node restart.
func TestReview20bNodeLeftPrimaryIsNotFailed(t *testing.T) {
	const ix, uuid = "optimize-metadata_v3", "RESTORED-BY-THE-JOB"
	for name, unassigned := range map[string]string{
		"data node restarting":              `{"reason":"NODE_LEFT","details":"node_left [n2]","delayed":false,"allocation_status":"no_valid_shard_copy"}`,
		"full restart, node not yet joined": `{"reason":"CLUSTER_RECOVERED","delayed":false,"allocation_status":"no_valid_shard_copy"}`,
	} {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			stateReads := 0
			es := &scriptES{mem: newMemDocs()}
			es.answer = func(key string, r *http.Request, body string) (int, string) {
				mu.Lock()
				defer mu.Unlock()
				nodeBack := stateReads >= 2
				switch {
				case key == "GET /_resolve/index/"+ix:
					return resolved(ix)
				case key == "GET /"+ix+"/_settings/index.uuid,index.blocks.write,index.creation_date":
					return settingsOf(ix, uuid)
				case key == "GET /"+ix+"/_recovery" && !nodeBack:
					return 200, `{}` // its only copy is on the node that is away
				case key == "GET /"+ix+"/_recovery":
					return 200, `{"` + ix + `":{"shards":[{"id":0,"type":"EXISTING_STORE","stage":"DONE","primary":true,"index":{"size":{"total_in_bytes":100,"recovered_in_bytes":0}}}]}}`
				case strings.HasPrefix(key, "GET /_cluster/state/") && !nodeBack:
					stateReads++
					return 200, clusterState(ix, uuid, `{"state":"UNASSIGNED","primary":true,"unassigned_info":`+unassigned+`}`)
				case strings.HasPrefix(key, "GET /_cluster/state/"):
					return 200, clusterState(ix, uuid, `{"state":"STARTED","primary":true}`)
				case key == "DELETE /"+ix:
					return 200, `{"acknowledged":true}`
				}
				return unexpected(key)
			}
			s := scriptServer(t, es, 0)
			run := partJob(t, s, ix, map[string]string{ix: uuid})
			err := run.restorePartRepairing(context.Background(), 0)
			if deleted := es.sent("DELETE /" + ix); err != nil || len(deleted) > 0 {
				t.Errorf("an index restored completely, whose only copy is on a node that is away for a moment: got %v, deleted %v; want the part done once the node is back, nothing deleted", err, deleted)
			}
		})
	}
}

// resumedJob stores a running restore job at restore-part-1 of one part holding ix, begun an
// hour ago, whose last restore request asked for ix (Restoring) and whose sidecar died before
// it recorded what the request created (Restored holds only an index of an earlier part).
func resumedJob(t *testing.T, s *server, ix string) *jobRun {
	t.Helper()
	run := partJob(t, s, ix, map[string]string{"optimize-earlier-part_v1": "e"})
	if err := run.update(context.Background(), func(d *jobDoc) { d.Restoring = []string{ix} }); err != nil {
		t.Fatal(err)
	}
	return run
}

// TestReview20bResumedJobDisownsItsOwnIndex: the job records what its restore request created
// only after the request answered (recordRestored). A sidecar killed in between (OOM, a node
// drained) leaves Restoring = [ix] and no UUID; the sidecar that resumes the job 75 s later
// judges ix in checkExisting by its LAST recovery's source, not by the creation date that
// fromSnapshot trusts everywhere else:
//   - restarted since: the index was restored, then its primary restarted from its store (a
//     node restart) or relocated (a rebalance, PEER): no SNAPSHOT recovery shows any more, and
//     the job FAILS past its point of no return with "something created it (is Optimize
//     running?)" for an index it restored itself, whose creation date says so;
//   - still recovering: accepted (SNAPSHOT of the part) but never recorded, so followRecovery
//     does not count it as the job's: when the crash this issue is about then fails its
//     primary (ALLOCATION_FAILED, deciders_no), failedIndices skips it ("not an index the
//     caller created") and the job waits for the stall timeout instead of repairing it.
func TestReview20bResumedJobDisownsItsOwnIndex(t *testing.T) {
	const ix, uuid = "optimize-metadata_v3", "RESTORED-BY-THE-JOB"
	created := time.Now().Add(-48 * time.Hour).UnixMilli() // the snapshot's: older than the job
	settings := fmt.Sprintf(`{"%s":{"settings":{"index.uuid":"%s","index.creation_date":"%d"}}}`, ix, uuid, created)

	t.Run("restarted since", func(t *testing.T) {
		es := &scriptES{mem: newMemDocs()}
		es.answer = func(key string, r *http.Request, body string) (int, string) {
			switch {
			case key == "GET /_resolve/index/"+ix:
				return resolved(ix)
			case key == "GET /"+ix+"/_settings/index.uuid,index.blocks.write,index.creation_date":
				return 200, settings
			case key == "GET /"+ix+"/_recovery":
				return 200, `{"` + ix + `":{"shards":[{"id":0,"type":"EXISTING_STORE","stage":"DONE","primary":true,"index":{"size":{"total_in_bytes":100,"recovered_in_bytes":0}}}]}}`
			case strings.HasPrefix(key, "GET /_cluster/state/"):
				return 200, clusterState(ix, uuid, `{"state":"STARTED","primary":true}`)
			}
			return unexpected(key)
		}
		s := scriptServer(t, es, 3)
		run := resumedJob(t, s, ix)
		err := run.restorePartRepairing(context.Background(), 0)
		if err != nil || run.current().Restored[ix] != uuid {
			t.Errorf("the job's own index (in Restoring, created before the job: restored from its snapshot), whose primary restarted since: got %v, restored %v; want the part done and the index recorded as the job's", err, run.current().Restored)
		}
	})

	t.Run("still recovering, then failed", func(t *testing.T) {
		var mu sync.Mutex
		recoveryReads := 0
		es := &scriptES{mem: newMemDocs()}
		es.answer = func(key string, r *http.Request, body string) (int, string) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case key == "GET /_resolve/index/"+ix:
				return resolved(ix)
			case key == "GET /"+ix+"/_settings/index.uuid,index.blocks.write,index.creation_date":
				return 200, settings
			case key == "GET /"+ix+"/_recovery" && recoveryReads == 0:
				recoveryReads++
				return 200, `{"` + ix + `":{"shards":[{"id":0,"type":"SNAPSHOT","stage":"INDEX","primary":true,"source":{"snapshot":"snap-1"},"index":{"size":{"total_in_bytes":100,"recovered_in_bytes":50}}}]}}`
			case key == "GET /"+ix+"/_recovery":
				return 200, `{}` // the node crashed: the primary is unassigned
			case strings.HasPrefix(key, "GET /_cluster/state/"):
				return 200, clusterState(ix, uuid, `{"state":"UNASSIGNED","primary":true,"unassigned_info":{"reason":"ALLOCATION_FAILED","failed_attempts":5,"allocation_status":"deciders_no","details":"failed recovery ... TranslogCorruptedException"}}`)
			case key == "DELETE /"+ix:
				return 200, `{"acknowledged":true}`
			}
			return unexpected(key)
		}
		s := scriptServer(t, es, 0)
		run := resumedJob(t, s, ix)
		err := run.restorePartRepairing(context.Background(), 0)
		var failure *shardFailure
		if !errors.As(err, &failure) || len(es.sent("DELETE /"+ix)) == 0 {
			t.Errorf("the job's own index, failed for good: got %v (deleted %v); want it judged failed and deleted (repair), as an index recorded before would be", err, es.sent("DELETE /"+ix))
		}
	})
}

// TestReview20bAppearedWaitsInSilencePastTheStallTimeout: after a restore request whose answer
// was lost, appeared() keeps asking whether its indices exist for as long as Elasticsearch
// answers with a passing fault, until OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT (6 h): it logs
// nothing, sets no waitingFor (the status shows the job waiting for nothing), and neither the
// stall watch (looked at only between two rounds of retrying) nor anything else ends it. A
// cluster whose reads are refused (a parent circuit breaker tripping on every _resolve) keeps
// the job silent for six hours: what issue 20 point 3 forbids.
func TestReview20bAppearedWaitsInSilencePastTheStallTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ix = "optimize-metadata_v3"
		var mu sync.Mutex
		resolves := 0
		es := &scriptES{mem: newMemDocs()}
		es.answer = func(key string, r *http.Request, body string) (int, string) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case key == "GET /_resolve/index/"+ix && resolves == 0:
				resolves++
				return 200, `{"indices":[]}`
			case key == "GET /_resolve/index/"+ix:
				return 429, `{"error":{"type":"circuit_breaking_exception","reason":"[parent] Data too large"},"status":429}`
			case key == "POST /_snapshot/repo/snap-1/_restore":
				return 502, `<html>502 Bad Gateway</html>`
			}
			return unexpected(key)
		}
		s := scriptServer(t, es, 3)
		s.cfg.RestoreWaitTimeout = 6 * time.Hour
		s.cfg.PollInterval = 10 * time.Second
		run := partJob(t, s, ix, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go run.renew(ctx) // the lease stays fresh, as under run()
		began := time.Now()
		err := run.restorePartRepairing(ctx, 0)
		if took := time.Since(began); took > s.cfg.RestoreStallTimeout+time.Minute {
			t.Errorf("a restore whose indices cannot even be looked for: ended after %v (%v), waitingFor %v; want the stall timeout (%v) to end it, with a log line each minute", took.Round(time.Minute), err, run.current().WaitingFor, s.cfg.RestoreStallTimeout)
		}
		cancel()
	})
}

// TestReview20bSecondEndLeavesItsLateBlock: liftAgainLater claims one registry key per BACKUP
// ID ("lift-again-<id>"), not per job. An operator ends a stuck restore of backup 1, starts it
// again at once, and ends that one too (it stalls the same way) within the first one's wait
// (one deadline): the second end finds the key taken and schedules no second lift, and the first
// waiter, finding another job (another Rev), lifts nothing. The block the second job's owner
// was setting at the moment of its end (the very case liftAgainLater exists for) stays:
// Optimize runs read-only with no restore running.
func TestReview20bSecondEndLeavesItsLateBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ix = "optimize-metadata_v3"
		es, blocked := blockWatch(ix)
		operator, owner := scriptServer(t, es, 3), scriptServer(t, es, 3)
		stuck := func(ver jobVersion) *jobRun {
			run := owner.newJobRun(jobDoc{restoreJob: restoreJob{BackupID: "1", State: restoreRunning, Step: stepSafety}, Repository: "repo",
				Plan: restorePlan{Replace: []string{ix}}, WriteBlocked: true}, ver)
			if err := run.start(context.Background()); err != nil {
				t.Fatal(err)
			}
			return run
		}
		stuck(jobVersion{})
		if _, err := operator.endRestore(context.Background(), "1", true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		stored, err := owner.loadJob(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		second := stuck(stored.ver)
		if err := owner.setWriteBlock(context.Background(), []string{ix}, true, second.guard); err != nil {
			t.Fatal(err)
		}
		if _, err := operator.endRestore(context.Background(), "1", true); err != nil {
			t.Fatal(err)
		}
		// The second owner's block request, sent just before the end, lands after the first lift.
		if err := owner.setWriteBlock(context.Background(), []string{ix}, true, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2*operator.cfg.ESTimeout + 2*time.Second) // both second lifts are due
		synctest.Wait()
		if blocked() {
			t.Errorf("the second restore of backup 1 was ended by an operator, but the write block its owner was setting then is still on %s", ix)
		}
	})
}

// TestReview20bClockSkewDisownsARestoredIndex: fromSnapshot compares index.creation_date (the
// Elasticsearch master's clock, kept by the restore from when the index was first created) with
// the job's StartTime (the sidecar's clock). With the master's clock minutes ahead, an index
// that Optimize created shortly before the backup (a new process definition's import index,
// the backup taken a minute later, the restore a minute after that) has a creation date after
// the job's start: recordRestored calls the index the job itself just restored "created after
// this restore began", and the job FAILS past its point of no return (the replaced indices
// already deleted). Both dates are Elasticsearch's when compared with the part's snapshot's
// start_time (an index restored from it existed when it began).
func TestReview20bClockSkewDisownsARestoredIndex(t *testing.T) {
	const ix, uuid = "optimize-process-instance-invoice_v8", "RESTORED-BY-THE-JOB"
	const skew = 5 * time.Minute // the master's clock is ahead of the sidecar's
	createdAt := time.Now().Add(-2 * time.Minute).Add(skew)
	var mu sync.Mutex
	restored := false
	es := &scriptES{mem: newMemDocs()}
	es.answer = func(key string, r *http.Request, body string) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case key == "GET /_resolve/index/"+ix && !restored:
			return 200, `{"indices":[]}`
		case key == "GET /_resolve/index/"+ix:
			return resolved(ix)
		case key == "POST /_snapshot/repo/snap-1/_restore":
			restored = true
			return 200, `{"accepted":true}`
		case key == "GET /"+ix+"/_settings/index.uuid,index.blocks.write,index.creation_date":
			return 200, fmt.Sprintf(`{"%s":{"settings":{"index.uuid":"%s","index.creation_date":"%d"}}}`, ix, uuid, createdAt.UnixMilli())
		case key == "GET /"+ix+"/_recovery":
			return 200, `{"` + ix + `":{"shards":[{"id":0,"type":"SNAPSHOT","stage":"DONE","primary":true,"source":{"snapshot":"snap-1"},"index":{"size":{"total_in_bytes":100,"recovered_in_bytes":100}}}]}}`
		case strings.HasPrefix(key, "GET /_cluster/state/"):
			return 200, clusterState(ix, uuid, `{"state":"STARTED","primary":true}`)
		}
		return unexpected(key)
	}
	s := scriptServer(t, es, 3)
	run := partJob(t, s, ix, nil)
	// The job began just now (the backup a minute ago, the index a minute before that); the
	// plan holds the snapshot's start, by the master's clock.
	if err := run.update(context.Background(), func(d *jobDoc) {
		d.StartTime = ptr(time.Now().UTC())
		d.Plan.Parts[0].StartMillis = createdAt.Add(time.Minute).UnixMilli()
	}); err != nil {
		t.Fatal(err)
	}
	err := run.restorePartRepairing(context.Background(), 0)
	if err != nil || run.current().Restored[ix] != uuid {
		t.Errorf("an index the job restored from its snapshot, with the master's clock %v ahead: got %v, restored %v; want the part done and the index the job's", skew, err, run.current().Restored)
	}
}
