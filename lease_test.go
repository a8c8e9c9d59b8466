package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The leased job's promises, in fake time (testing/synctest): a 75 s take-over is tested in
// milliseconds, against an in-memory document store that answers as Elasticsearch's document
// API does (sequence numbers, op_type=create, if_seq_no) and can lose answers or hang.

// memDocs is an in-memory jobs index behind an esapi.Transport.
type memDocs struct {
	mu    sync.Mutex
	docs  map[string]memDoc
	seqNo int64
	// fault, if set, is asked before each request: hang that long first (bounded by the
	// request's context), apply the request or not, then lose the answer or not.
	fault func(r *http.Request) (hang time.Duration, apply, loseAnswer bool)
}

type memDoc struct {
	source []byte
	seqNo  int64
}

func newMemDocs() *memDocs { return &memDocs{docs: map[string]memDoc{}} }

// Perform answers GET and PUT of /{index}/_doc/{id}.
func (m *memDocs) Perform(r *http.Request) (*http.Response, error) {
	apply, lose := true, false
	if m.fault != nil {
		var hang time.Duration
		hang, apply, lose = m.fault(r)
		if hang > 0 {
			select {
			case <-time.After(hang):
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
		}
	}
	status, body := http.StatusBadGateway, `{}`
	if apply {
		status, body = m.serve(r)
	}
	if lose {
		return nil, errors.New("connection reset by peer (test)")
	}
	return &http.Response{StatusCode: status, Header: http.Header{"X-Elastic-Product": {"Elasticsearch"}, "Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

func (m *memDocs) serve(r *http.Request) (int, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, id, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/_doc/")
	if !ok {
		return http.StatusOK, `{"acknowledged":true}` // index creation
	}
	stored, found := m.docs[id]
	if r.Method == http.MethodGet {
		if !found {
			return http.StatusNotFound, `{"found":false}`
		}
		return http.StatusOK, fmt.Sprintf(`{"found":true,"_seq_no":%d,"_primary_term":1,"_source":%s}`, stored.seqNo, stored.source)
	}
	q := r.URL.Query()
	conflict := q.Get("op_type") == "create" && found ||
		q.Has("if_seq_no") && (!found || q.Get("if_seq_no") != strconv.FormatInt(stored.seqNo, 10))
	if conflict {
		return http.StatusConflict, `{"error":{"type":"version_conflict_engine_exception","reason":"version conflict"},"status":409}`
	}
	body, _ := io.ReadAll(r.Body)
	m.seqNo++
	m.docs[id] = memDoc{source: body, seqNo: m.seqNo}
	return http.StatusOK, fmt.Sprintf(`{"_seq_no":%d,"_primary_term":1,"result":"created"}`, m.seqNo)
}

// stored decodes the stored document id.
func (m *memDocs) stored(t *testing.T, id string) (jobDoc, int64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var doc jobDoc
	if err := json.Unmarshal(m.docs[id].source, &doc); err != nil {
		t.Fatalf("stored %s: %v", id, err)
	}
	return doc, m.docs[id].seqNo
}

// leaseServer is a sidecar (a replica) on the in-memory store, with the production timeouts.
func leaseServer(t *testing.T, mem *memDocs) *server {
	cfg := config{IndexPrefix: "optimize", JobsIndex: "jobs", Repository: "repo", ESTimeout: 30 * time.Second}
	return newServer(cfg, esClients{read: mem, write: mem, restore: mem}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
}

// startTestJob stores a new running restore job owned by s.
func startTestJob(t *testing.T, s *server) *jobRun {
	t.Helper()
	run := s.newJobRun(jobDoc{restoreJob: restoreJob{BackupID: "1", State: restoreRunning, Step: stepStarting}, Repository: "repo"}, jobVersion{})
	if err := run.start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	return run
}

// TestLeaseLostCompareAndSet: a job whose document another sidecar wrote stops at its next
// write with errLeaseTaken, and its work's context ends with that cause.
func TestLeaseLostCompareAndSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a, b := leaseServer(t, mem), leaseServer(t, mem)
		owner := startTestJob(t, a)
		doc, seq := mem.stored(t, a.jobDocID())
		thief := b.newJobRun(doc, jobVersion{SeqNo: seq, PrimaryTerm: 1})
		if err := thief.takeOver(context.Background(), func(*jobDoc) {}); err != nil {
			t.Fatalf("take-over: %v", err)
		}
		var stepErr error
		ctx, _ := owner.leasedJob.run(context.Background(), func(ctx context.Context) error {
			stepErr = owner.step(ctx, stepSafety)
			<-ctx.Done()
			return ctx.Err()
		})
		if !errors.Is(stepErr, errLeaseTaken) || !errors.Is(context.Cause(ctx), errLeaseTaken) {
			t.Errorf("owner's write after a take-over: got %v (cause %v); want errLeaseTaken", stepErr, context.Cause(ctx))
		}
		if got, _ := mem.stored(t, a.jobDocID()); got.Owner != b.owner || got.Step != stepStarting {
			t.Errorf("stored job: got owner %s at step %s; want %s at %s, untouched by the old owner", got.Owner, got.Step, b.owner, stepStarting)
		}
	})
}

// TestLeaseGuardStopsBeforeTakeOver: an owner whose renewals hang stops acting (guard) at
// least one Elasticsearch deadline before any watcher can take the job over.
func TestLeaseGuardStopsBeforeTakeOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a, b := leaseServer(t, mem), leaseServer(t, mem)
		owner := startTestJob(t, a)
		began := time.Now()
		mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
			if r.Method == http.MethodPut {
				return time.Hour, true, false // every write hangs until its deadline
			}
			return 0, true, false
		}
		var expiredAt time.Time
		ctx, cancel := context.WithCancel(context.Background())
		go owner.leasedJob.run(ctx, func(ctx context.Context) error {
			for owner.guard() == nil {
				time.Sleep(100 * time.Millisecond)
			}
			expiredAt = time.Now()
			<-ctx.Done()
			return nil
		})
		var takenAt time.Time
		go watchLeased[jobDoc](ctx, b, b.jobDocID(), jobDoc.active, func() bool { return false }, func(ctx context.Context, doc jobDoc, ver jobVersion) error {
			takenAt = time.Now()
			cancel()
			return nil
		})
		time.Sleep(10 * time.Minute)
		cancel()
		synctest.Wait()
		if expiredAt.IsZero() || takenAt.IsZero() {
			t.Fatalf("got guard expired at %v, take-over at %v; want both", expiredAt, takenAt)
		}
		if gap := takenAt.Sub(expiredAt); gap < a.cfg.ESTimeout {
			t.Errorf("guard expired %v after the last renewal, take-over %v after: got a gap of %v; want at least one deadline (%v)", expiredAt.Sub(began), takenAt.Sub(began), gap, a.cfg.ESTimeout)
		}
		if got := takenAt.Sub(began); got < a.staleAfter() || got > a.staleAfter()+2*heartbeatEvery {
			t.Errorf("take-over after %v; want between staleAfter (%v) and two heartbeats later", got, a.staleAfter())
		}
	})
}

// TestLeaseLiveOwnerKeepsJob: a watcher never takes over a job whose owner renews its lease,
// however long it runs.
func TestLeaseLiveOwnerKeepsJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a, b := leaseServer(t, mem), leaseServer(t, mem)
		owner := startTestJob(t, a)
		ctx, cancel := context.WithCancel(context.Background())
		var guardErr error
		go owner.leasedJob.run(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			guardErr = owner.guard()
			return nil
		})
		tookOver := false
		go watchLeased[jobDoc](ctx, b, b.jobDocID(), jobDoc.active, func() bool { return false }, func(context.Context, jobDoc, jobVersion) error {
			tookOver = true
			return nil
		})
		time.Sleep(time.Hour)
		cancel()
		synctest.Wait()
		if tookOver || guardErr != nil {
			t.Errorf("after an hour of renewals: got take-over %v, guard %v; want neither", tookOver, guardErr)
		}
	})
}

// TestLeaseWatchersRace: two watchers that find the same silent job both try to take it
// over; exactly one owns it.
func TestLeaseWatchersRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		startTestJob(t, a) // and then a goes silent
		var mu sync.Mutex
		won := map[string]error{}
		ctx, cancel := context.WithCancel(context.Background())
		for range 2 {
			w := leaseServer(t, mem)
			go watchLeased[jobDoc](ctx, w, w.jobDocID(), jobDoc.active, func() bool { return false }, func(ctx context.Context, doc jobDoc, ver jobVersion) error {
				err := w.newJobRun(doc, ver).takeOver(ctx, func(*jobDoc) {})
				mu.Lock()
				won[w.owner] = err
				mu.Unlock()
				return err
			})
		}
		time.Sleep(a.staleAfter() + time.Second)
		synctest.Wait()
		time.Sleep(3 * heartbeatEvery) // a loser reads the new owner's version: no second try
		cancel()
		synctest.Wait()
		winners := 0
		for owner, err := range won {
			switch {
			case err == nil:
				winners++
				if got, _ := mem.stored(t, a.jobDocID()); got.Owner != owner {
					t.Errorf("stored owner %s; want the winner %s", got.Owner, owner)
				}
			case !errors.Is(err, errLeaseTaken):
				t.Errorf("losing watcher: got %v; want errLeaseTaken", err)
			}
		}
		if winners != 1 {
			t.Errorf("take-overs: got %v; want exactly one winner", won)
		}
	})
}

// TestLeaseLostAnswer: a renewal whose answer is lost (and whose read-back fails too) went
// through; the owner's next write finds its own write stored and builds on it, instead of
// taking it for a take-over.
func TestLeaseLostAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		owner := startTestJob(t, a)
		faults := 2 // the write's answer, then the read-back
		mem.fault = func(r *http.Request) (time.Duration, bool, bool) {
			if faults == 0 {
				return 0, true, false
			}
			faults--
			return 0, true, true
		}
		if err := owner.step(context.Background(), stepSafety); err == nil {
			t.Fatal("a write whose answer and read-back were lost: got nil; want an error")
		}
		if err := owner.step(context.Background(), stepConfirm); err != nil {
			t.Fatalf("the next write: got %v; want it stored", err)
		}
		if got, _ := mem.stored(t, a.jobDocID()); got.Step != stepConfirm || got.Owner != a.owner {
			t.Errorf("stored: got step %s owned by %s; want %s owned by %s", got.Step, got.Owner, stepConfirm, a.owner)
		}
	})
}

// TestLeaseReadsNeverWait: current() and guard() answer at once while a write hangs.
func TestLeaseReadsNeverWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemDocs()
		a := leaseServer(t, mem)
		owner := startTestJob(t, a)
		mem.fault = func(*http.Request) (time.Duration, bool, bool) { return 20 * time.Second, true, false }
		go owner.step(context.Background(), stepSafety)
		time.Sleep(time.Second) // the write is in flight
		began := time.Now()
		_, guardErr := owner.current(), owner.guard()
		if waited := time.Since(began); waited != 0 || guardErr != nil {
			t.Errorf("current and guard during a write: waited %v, guard %v; want no wait, nil", waited, guardErr)
		}
		time.Sleep(time.Minute) // the write ends
	})
}
