package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Regression tests from a hostile review of the leased job (lease.go, restorejob.go, drill.go):
// each comment tells how a first version broke a promise (line numbers are of that version);
// the test proves it holds now. They run in fake time on memDocs (lease_test.go).

// faultScript answers the requests of memDocs in order from a script of faults, then answers
// normally. Each fault: apply the request or not, then lose the answer or not.
type faultScript struct {
	mu     sync.Mutex
	faults []scriptedFault
	seen   []string
}

type scriptedFault struct{ apply, lose bool }

func (f *faultScript) next(r *http.Request) (time.Duration, bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, r.Method+" "+r.URL.Path)
	if len(f.faults) == 0 {
		return 0, true, false
	}
	x := f.faults[0]
	f.faults = f.faults[1:]
	return 0, x.apply, x.lose
}

// TestReviewTwoLostWritesMistakenForTakeOver: a write that was stored but whose answer and
// read-back were lost (a node restarting), followed by a renewal that never reached
// Elasticsearch (connection refused, read-back refused too), overwrites the Rev that
// adoptUnconfirmed looks for. The next write finds the first one stored, cannot recognise it,
// and the job stops with errLeaseTaken although no other sidecar ever wrote the document.
func TestReviewTwoLostWritesMistakenForTakeOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		owner := startTestJob(t, a)
		script := &faultScript{faults: []scriptedFault{
			{apply: true, lose: true},  // W1 stored, answer lost
			{apply: false, lose: true}, // its read-back lost
			{apply: false, lose: true}, // W2 (a renewal) never arrives
			{apply: false, lose: true}, // its read-back lost
		}}
		mem.fault = script.next
		ctx := context.Background()
		if err := owner.step(ctx, stepSafety); err == nil {
			t.Fatal("W1: got nil; want a lost answer")
		}
		time.Sleep(heartbeatEvery)
		if err := owner.update(ctx, func(*jobDoc) {}); err == nil {
			t.Fatal("W2: got nil; want a lost answer")
		}
		err := owner.step(ctx, stepConfirm)
		stored, _ := mem.stored(t, a.jobDocID())
		if errors.Is(err, errLeaseTaken) {
			t.Errorf("W3 after two lost writes: got errLeaseTaken, but the stored document is this sidecar's own W1 (owner %s, step %s): a lost answer was taken for a take-over", stored.Owner, stored.Step)
		}
	})
}

// TestReviewAdoptReadFailureMistakenForTakeOver: after a write whose answer and read-back were
// lost, the next compare-and-set conflicts (the write went through) and adoptUnconfirmed reads
// the document to recognise it; when that read fails too, update() reports errLeaseTaken
// instead of a passing error, and the job stops as if another sidecar had taken it.
func TestReviewAdoptReadFailureMistakenForTakeOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		owner := startTestJob(t, a)
		mem.fault = (&faultScript{faults: []scriptedFault{
			{apply: true, lose: true},  // W1 stored, answer lost
			{apply: true, lose: true},  // its read-back lost
			{apply: true, lose: false}, // W2: 409 (W1 is stored)
			{apply: true, lose: true},  // adoptUnconfirmed's read lost
		}}).next
		ctx := context.Background()
		if err := owner.step(ctx, stepSafety); err == nil {
			t.Fatal("W1: got nil; want a lost answer")
		}
		err := owner.step(ctx, stepConfirm)
		if errors.Is(err, errLeaseTaken) {
			stored, _ := mem.stored(t, a.jobDocID())
			t.Errorf("W2 whose read-back failed: got errLeaseTaken; want a passing error (the stored document is this sidecar's own, owner %s step %s)", stored.Owner, stored.Step)
		}
	})
}

// TestReviewRestoreExpiredLeaseNotHandedOver: finish() says a job stopped past the point of no
// return by an expired lease is handed over (owner cleared, restorejob.go:225), and liftBlock
// says it renews and lifts the block before it (restorejob.go:203). lost() counts
// errLeaseExpired as "stop without writing", so neither runs: the job keeps this sidecar as
// owner and waits a whole staleAfter for a take-over, and a block set before the point of no
// return stays until then. The drill treats the same error the other way (finish's
// compare-and-set decides, drill.go:366).
func TestReviewRestoreExpiredLeaseNotHandedOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		run := a.newJobRun(jobDoc{restoreJob: restoreJob{BackupID: "1", State: restoreRunning, Step: stepDelete}, Repository: "repo"}, jobVersion{})
		ctx := context.Background()
		if err := run.start(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(a.guardMargin() + time.Second) // Elasticsearch slow: no renewal stored
		gerr := run.guard()
		if !errors.Is(gerr, errLeaseExpired) {
			t.Fatalf("guard: got %v; want errLeaseExpired", gerr)
		}
		run.finish(ctx, fmt.Errorf("delete indices: %w", gerr), false)
		if got, _ := mem.stored(t, a.jobDocID()); got.Owner != "" {
			t.Errorf("a job past the point of no return whose lease expired (nobody took it): got owner %q; want it handed over (owner \"\"), as finish's own condition says", got.Owner)
		}
	})
}

// TestReviewRestoreExpiredLeaseKeepsWriteBlock: a job that set its write block and then found
// its lease expired before the point of no return does not lift the block, although liftBlock
// has a branch to renew and lift for exactly this error: Optimize stays read-only until another
// sidecar takes the job over (up to staleAfter later, never with one replica whose own watcher
// is the only one).
func TestReviewRestoreExpiredLeaseKeepsWriteBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		var mu sync.Mutex
		lifts := 0
		mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
			if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/_settings") {
				mu.Lock()
				lifts++
				mu.Unlock()
			}
			return 0, true, false
		}
		a := leaseServer(t, mem)
		plan := restorePlan{Replace: []string{"optimize-a"}}
		run := a.newJobRun(jobDoc{restoreJob: restoreJob{BackupID: "1", State: restoreRunning, Step: stepSafety}, Repository: "repo", Plan: plan, WriteBlocked: true}, jobVersion{})
		ctx := context.Background()
		if err := run.start(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(a.guardMargin() + time.Second)
		lifted, _ := run.liftBlock(ctx, fmt.Errorf("safety backup: %w", run.guard()))
		mu.Lock()
		defer mu.Unlock()
		if !lifted || lifts == 0 {
			t.Errorf("block set before the point of no return, lease expired, nobody took the job: got lifted %v after %d settings requests; want the renewal then the lift (restorejob.go:203)", lifted, lifts)
		}
	})
}

// TestReviewLostTakeOverAnswerOrphansJob: a watcher's take-over whose write was stored but
// whose answer (and read-back) got lost is thrown away: the document now names this sidecar
// as owner, but nothing runs it, and the watcher (having reset its clock) waits a whole
// staleAfter again before it retries. The job sits RUNNING with nobody on it.
func TestReviewLostTakeOverAnswerOrphansJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a, b := leaseServer(t, mem), leaseServer(t, mem)
		startTestJob(t, a) // then a goes silent
		var mu sync.Mutex
		var tookAt time.Time
		loseNext := 0
		mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
			mu.Lock()
			defer mu.Unlock()
			if r.Method == http.MethodPut && tookAt.IsZero() {
				tookAt, loseNext = time.Now(), 1
				return 0, true, true // the take-over is stored, its answer lost
			}
			if r.Method == http.MethodGet && loseNext > 0 {
				loseNext--
				return 0, true, true // and its read-back
			}
			return 0, true, false
		}
		ctx, cancel := context.WithCancel(context.Background())
		go b.watchRestoreJobs(ctx)
		time.Sleep(a.staleAfter() + 2*heartbeatEvery)
		synctest.Wait()
		mu.Lock()
		began := tookAt
		mu.Unlock()
		if began.IsZero() {
			t.Fatal("no take-over attempt")
		}
		time.Sleep(4 * heartbeatEvery)
		got, _ := mem.stored(t, a.jobDocID())
		stuck := got.active()
		cancel()
		b.restores.shutdown(context.Background())
		synctest.Wait()
		if stuck {
			t.Errorf("%v after a take-over whose answer was lost: job %s at step %s, owner is the watcher (%v), which runs nothing; want it run (here: ended FAILED) within a few heartbeats, not after another %v", 4*heartbeatEvery, got.State, got.Step, got.Owner == b.owner, b.staleAfter())
		}
	})
}

// TestReviewOwnJobAfterFinishFailed: one replica; its restore ends, but the write that records
// the end fails (a 5xx, nothing stored). The document still names this sidecar as owner, the
// registry no longer holds the job, and this sidecar's own watcher treats it as any silent
// owner's: the job stays RUNNING (and a new POST .../restore gets 409) for a whole staleAfter,
// although this process knows that it runs nothing.
func TestReviewOwnJobAfterFinishFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		job := startTestJob(t, a)
		var mu sync.Mutex
		fail := false
		mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
			mu.Lock()
			defer mu.Unlock()
			if r.Method == http.MethodPut && fail {
				fail = false
				return 0, false, false // 502 with nothing stored (the read-back says so)
			}
			return 0, true, false
		}
		ctx, cancel := context.WithCancel(context.Background())
		go a.watchRestoreJobs(ctx)
		if !a.restores.claim(restoreKey) {
			t.Fatal("claim")
		}
		a.restores.start(restoreKey, func(ctx context.Context) {
			job.leasedJob.run(ctx, func(context.Context) error { return nil })
			mu.Lock()
			fail = true
			mu.Unlock()
			job.finish(ctx, errors.New("a step failed"), false)
		})
		time.Sleep(6 * heartbeatEvery)
		got, _ := mem.stored(t, a.jobDocID())
		cancel()
		a.restores.shutdown(context.Background())
		synctest.Wait()
		if got.active() {
			t.Errorf("%v after this sidecar's job returned and its final write failed: job still %s owned by this sidecar, which runs nothing; want its own watcher to take it at once rather than after %v", 6*heartbeatEvery, got.State, a.staleAfter())
		}
	})
}

// TestReviewDestructiveRequestsBoundedByDeadline: guard's timeline (lease.go:19-25) assumes an
// action sent before the guard refuses is over one Elasticsearch deadline later. The deadline
// bounds only the client: a delete, a settings change or a restore not yet run by the master
// waits there for master_timeout (Elasticsearch's default 30 s) and runs later, whatever the
// client gave up. With OPTIMIZE_BACKUP_ELASTICSEARCH_TIMEOUT=1s the guard refuses 11 s after a
// renewal, a take-over comes 17 s after it, and a delete sent at 11 s may still run at 41 s:
// after the new owner restored the indices (deleting them) or lifted a block (setting it back).
func TestReviewDestructiveRequestsBoundedByDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		var mu sync.Mutex
		queries := map[string]string{}
		mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
			mu.Lock()
			queries[r.Method+" "+r.URL.Path] = r.URL.RawQuery
			mu.Unlock()
			return 0, true, false
		}
		a := leaseServer(t, mem)
		a.cfg.ESTimeout = time.Second
		ctx := context.Background()
		ok := func() error { return nil }
		_ = a.deleteIndices(ctx, []string{"optimize-a"}, ok)
		_ = a.setWriteBlock(ctx, []string{"optimize-a"}, true, ok)
		_ = a.restoreSnapshot(ctx, "snap", []string{"optimize-a"})
		mu.Lock()
		defer mu.Unlock()
		for req, q := range queries {
			if !strings.Contains(q, "master_timeout=") {
				t.Errorf("%s?%s: no master_timeout: Elasticsearch may run it up to 30 s after the client gave up at %v, past a take-over %v after the last renewal", req, q, a.cfg.ESTimeout, a.staleAfter())
			}
		}
	})
}

// TestReviewGuardTimelineOtherDeadlines checks the in-process part of the timeline for
// non-default deadlines: the guard refuses at least one deadline before a watcher can take
// over (passes: the arithmetic of lease.go holds for the client side).
func TestReviewGuardTimelineOtherDeadlines(t *testing.T) {
	for _, deadline := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Minute} {
		t.Run(deadline.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := newMemDocs()
				a, b := leaseServer(t, mem), leaseServer(t, mem)
				a.cfg.ESTimeout, b.cfg.ESTimeout = deadline, deadline
				owner := startTestJob(t, a)
				mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
					if r.Method == http.MethodPut {
						return 24 * time.Hour, true, false
					}
					return 0, true, false
				}
				var expiredAt, takenAt time.Time
				ctx, cancel := context.WithCancel(context.Background())
				go owner.leasedJob.run(ctx, func(ctx context.Context) error {
					for owner.guard() == nil {
						time.Sleep(10 * time.Millisecond)
					}
					expiredAt = time.Now()
					<-ctx.Done()
					return nil
				})
				go watchLeased[jobDoc](ctx, b, b.jobDocID(), jobDoc.active, func() bool { return false }, func(context.Context, jobDoc, jobVersion) error {
					if takenAt.IsZero() {
						takenAt = time.Now()
					}
					return nil
				})
				time.Sleep(3 * a.staleAfter())
				cancel()
				// renew may start more hanging renewals after cancel (see
				// TestReviewRenewAfterStop): wait until they end.
				time.Sleep(24 * time.Hour)
				synctest.Wait()
				if expiredAt.IsZero() || takenAt.IsZero() || takenAt.Sub(expiredAt) < deadline {
					t.Errorf("deadline %v: guard refused at %v, take-over at %v; want a gap of at least one deadline", deadline, expiredAt, takenAt)
				}
			})
		})
	}
}

// TestReviewNoDeadlockUnderChurn: renewals, work writes and a take-over race; run() must
// return and every goroutine end (synctest reports a deadlock otherwise). Passes.
func TestReviewNoDeadlockUnderChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		mem.fault = func(*http.Request) (time.Duration, bool, bool) { return 300 * time.Millisecond, true, false }
		a, b := leaseServer(t, mem), leaseServer(t, mem)
		owner := startTestJob(t, a)
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, _ := owner.leasedJob.run(context.Background(), func(ctx context.Context) error {
				for ctx.Err() == nil {
					if err := owner.step(ctx, stepSafety); errors.Is(err, errLeaseTaken) {
						return err
					}
					_ = owner.current()
					_ = owner.guard()
				}
				return ctx.Err()
			})
			if !errors.Is(context.Cause(ctx), errLeaseTaken) {
				t.Errorf("cause %v; want errLeaseTaken", context.Cause(ctx))
			}
		}()
		time.Sleep(12 * time.Second)
		doc, seq := mem.stored(t, a.jobDocID())
		thief := b.newJobRun(doc, jobVersion{SeqNo: seq, PrimaryTerm: 1})
		for thief.takeOver(context.Background(), func(*jobDoc) {}) != nil {
			doc, seq = mem.stored(t, a.jobDocID())
			thief = b.newJobRun(doc, jobVersion{SeqNo: seq, PrimaryTerm: 1})
		}
		<-done
	})
}

// TestReviewDrillRestoreUnguarded: every destructive call of the restore job passes guard
// right before it (restorePart: restorejob.go:497); the drill's restore into temporary indices
// does not (drill.go:420). A step write whose answer is lost and whose read-back comes back a
// deadline later leaves the lease two deadlines old (renewed is when the write was sent), past
// the guard, and the drill sends its restore all the same, 15 s before a watcher may take the
// drill over and delete its temporary indices under it.
func TestReviewDrillRestoreUnguarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		doc := drillDoc{Repository: "repo", drillResult: drillResult{BackupID: "1", State: drillRunning, Step: "start",
			Snapshots: []drillSnapshot{{Snapshot: "s1", ShardsTotal: 1}, {Snapshot: "s2", ShardsTotal: 1}},
			Indices: []drillIndex{{Snapshot: "s1", Index: "optimize-a_v1", TemporaryIndex: a.drillIndexPrefix() + "optimize-a_v1"},
				{Snapshot: "s2", Index: "optimize-b_v1", TemporaryIndex: a.drillIndexPrefix() + "optimize-b_v1"}}}}
		run := a.newDrillRun(doc, jobVersion{}, backupInfo{BackupID: "1", State: stateCompleted})
		if err := run.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		slow := false // the next GET of the drill document (the read-back) is slow
		var restoreGuard error
		restores := 0
		mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
			body := ""
			if r.Body != nil && r.Method == http.MethodPut {
				// peek: the step write of restore-part-1
				b, _ := io.ReadAll(r.Body)
				body = string(b)
				r.Body = io.NopCloser(strings.NewReader(body))
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case strings.Contains(body, `"step":"restore-part-1"`):
				slow = true
				return a.cfg.ESTimeout - time.Second, true, true // stored, answer lost at the deadline
			case slow && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/_doc/"):
				slow = false
				return a.cfg.ESTimeout - time.Second, true, false // the read-back finds it, late
			case strings.HasSuffix(r.URL.Path, "/_restore"):
				restores++
				restoreGuard = run.guard()
			}
			return 0, true, false
		}
		run.run(context.Background())
		mu.Lock()
		defer mu.Unlock()
		if restores > 0 && restoreGuard != nil {
			t.Errorf("the drill sent its restore while its own guard said %v", restoreGuard)
		}
	})
}

// TestReviewRenewAfterStop: run() stops the renewal when work returns, but renew() picks
// between ctx.Done() and a tick that is already waiting at random (lease.go:228-232), so after
// a renewal that took longer than a heartbeat it starts another one half of the time, and
// run() (and so the hand-over or the FAILED record that finish writes on shutdown) waits for
// it: up to two more deadlines per extra renewal, while Kubernetes' grace period runs.
func TestReviewRenewAfterStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		owner := startTestJob(t, a)
		mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
			if r.Method == http.MethodPut {
				return 20 * time.Second, true, false // slow, but stored within the deadline
			}
			return 0, true, false
		}
		late := 0
		const runs = 20
		for range runs {
			began := time.Now()
			owner.leasedJob.run(context.Background(), func(context.Context) error {
				time.Sleep(heartbeatEvery + time.Second) // a renewal is in flight when work ends
				return nil
			})
			// The renewal in flight began at one heartbeat and ends 20 s later.
			if took := time.Since(began); took > heartbeatEvery+20*time.Second+time.Second {
				late++
			}
		}
		if late > 0 {
			t.Errorf("%d of %d runs returned only after a renewal started after work had returned (another 20 s write each)", late, runs)
		}
	})
}
