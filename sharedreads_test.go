package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
)

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A caller that arrives while a read is under way gets the next read, never the running one:
// that one may have read Elasticsearch before the caller's own earlier change.
func TestSharedReadsNeverServeAnEarlierRead(t *testing.T) {
	var g sharedReads[int]
	var reads atomic.Int32
	release := make(chan struct{})
	read := func(context.Context) (int, error) {
		n := int(reads.Add(1))
		if n == 1 {
			<-release
		}
		return n, nil
	}
	first := make(chan int)
	go func() { v, _ := g.do(context.Background(), "1", read); first <- v }()
	waitFor(t, "the first read", func() bool { return reads.Load() == 1 })

	const later = 8
	got := make(chan int, later)
	for range later {
		go func() { v, _ := g.do(context.Background(), "1", read); got <- v }()
	}
	waitFor(t, "the later callers to wait", func() bool { return g.waiting("1") == later })
	// Another key is not held up by key 1's read.
	other, err := g.do(context.Background(), "2", read)
	assert.NilError(t, err)
	assert.Equal(t, other, 2)

	close(release)
	assert.Equal(t, <-first, 1)
	for range later {
		assert.Equal(t, <-got, 3, "a caller that arrived during read 1 got another read's answer")
	}
	assert.Equal(t, reads.Load(), int32(3), "the 8 later callers should have shared one read")
	g.mu.Lock()
	defer g.mu.Unlock()
	assert.Equal(t, len(g.keys), 0, "nothing may be held once no read is in flight")
}

// A caller that hangs up leaves; the read it started for others goes on and serves them.
func TestSharedReadsCallerHangsUp(t *testing.T) {
	var g sharedReads[int]
	release := make(chan struct{})
	var reads atomic.Int32
	read := func(ctx context.Context) (int, error) {
		n := int(reads.Add(1))
		select {
		case <-release:
			return n, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	go g.do(context.Background(), "1", read)
	waitFor(t, "the first read", func() bool { return reads.Load() == 1 })

	// The next read is started with the context of the first caller to wait for it, who then
	// hangs up: the second caller must still get the read's answer.
	gone, hangUp := context.WithCancel(context.Background())
	goneErr := make(chan error)
	go func() { _, err := g.do(gone, "1", read); goneErr <- err }()
	waitFor(t, "the first waiter", func() bool { return g.waiting("1") == 1 })
	stays := make(chan int)
	go func() { v, _ := g.do(context.Background(), "1", read); stays <- v }()
	waitFor(t, "the second waiter", func() bool { return g.waiting("1") == 2 })
	hangUp()
	assert.ErrorIs(t, <-goneErr, context.Canceled)
	close(release)
	assert.Equal(t, <-stays, 2)
}

// A read that panics still ends. Its own caller's panic goes on (net/http recovers it); the
// callers waiting for the next read get that read, and a shared read that panics gives its
// waiters an error instead of ending the process. No key is held afterwards.
func TestSharedReadsPanickingRead(t *testing.T) {
	var g sharedReads[int]
	release, started := make(chan struct{}), make(chan struct{})
	ownPanic := make(chan any)
	go func() {
		defer func() { ownPanic <- recover() }() // as net/http does for a handler
		g.do(context.Background(), "1", func(context.Context) (int, error) { close(started); <-release; panic("boom") })
	}()
	<-started
	errs := make(chan error)
	for range 2 {
		go func() {
			_, err := g.do(context.Background(), "1", func(context.Context) (int, error) { panic("shared boom") })
			errs <- err
		}()
	}
	waitFor(t, "the waiters", func() bool { return g.waiting("1") == 2 })
	close(release)
	assert.Equal(t, <-ownPanic, "boom")
	for range 2 {
		err := <-errs
		assert.ErrorContains(t, err, "failed unexpectedly (shared boom)")
	}
	waitFor(t, "the key to be forgotten", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.keys) == 0 })
}

// Through the real router and client: while a GET's read is under way, the backup is deleted
// and eight more GETs arrive. The first GET answers what its read saw; the eight share one
// read made after they arrived, and all say 404. Elasticsearch gets two requests, not nine.
func TestAPIConcurrentGetsShareOnlyLaterReads(t *testing.T) {
	es := newFakeES(t, map[string]string{getBackup1: "state-completed|state-unknown"})
	arrived, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	gated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isFirst := false
		first.Do(func() { isFirst = true })
		if isFirst {
			close(arrived)
			<-release
		}
		es.serve(w, r)
	}))
	defer gated.Close()
	srv := newTestServer(t, testConfig(gated.URL))
	h := srv.routes()
	get := func() *httptest.ResponseRecorder {
		res := httptest.NewRecorder()
		h.ServeHTTP(res, httptest.NewRequest("GET", "/actuator/backups/1", nil))
		return res
	}

	firstAnswer := make(chan *httptest.ResponseRecorder)
	go func() { firstAnswer <- get() }()
	<-arrived
	const later = 8
	answers := make(chan *httptest.ResponseRecorder, later)
	for range later {
		go func() { answers <- get() }()
	}
	waitFor(t, "the later GETs to wait", func() bool { return srv.stateReads.waiting("1") == later })
	close(release)

	res := <-firstAnswer
	assert.Equal(t, res.Code, http.StatusOK, res.Body.String())
	assert.Assert(t, jsonField(t, res.Body.Bytes(), "state") == "COMPLETED", res.Body.String())
	for range later {
		res := <-answers
		assert.Equal(t, res.Code, http.StatusNotFound, "a GET that arrived after the delete was answered from a read made before it: %s", res.Body.String())
	}
	assert.DeepEqual(t, es.sent(), []string{getBackup1, getBackup1})
}

// jsonField is a top-level string field of a JSON object.
func jsonField(t *testing.T, body []byte, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	s, _ := m[name].(string)
	return s
}

// waiting is how many callers wait for key's next read.
func (g *sharedReads[T]) waiting(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if k := g.keys[key]; k != nil && k.next != nil {
		return k.next.waiting
	}
	return 0
}
