package main

import (
	"context"
	"sync"
)

// registry tracks the long work this process runs outside requests (part-2 starts, restores,
// drills) by key; what other replicas must see lives in Elasticsearch.
type registry struct {
	mu     sync.Mutex
	work   map[string]context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// newRegistry is an empty registry.
func newRegistry() *registry { return &registry{work: map[string]context.CancelFunc{}} }

// claim reserves a key; false if it is already reserved or the process is stopping.
func (g *registry) claim(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, taken := g.work[key]; taken || g.closed {
		return false
	}
	g.work[key] = func() {}
	return true
}

// release gives up a claimed key.
func (g *registry) release(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.work, key)
}

// start runs work for a claimed key in the background, until cancel or shutdown; once shutdown
// began it releases the key and returns false (the work would outlive the process).
func (g *registry) start(key string, work func(context.Context)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		delete(g.work, key)
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.work[key] = cancel
	// Counted under the lock, so that shutdown never waits without it.
	g.wg.Go(func() {
		defer cancel()
		defer g.release(key)
		work(ctx)
	})
	return true
}

// has tells whether this process is working on the key.
func (g *registry) has(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.work[key]
	return ok
}

// count is how many keys are claimed.
func (g *registry) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.work)
}

// stopping tells whether shutdown began.
func (g *registry) stopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// cancel stops the background work of one key, if any.
func (g *registry) cancel(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cancel, ok := g.work[key]; ok {
		cancel()
	}
}

// shutdown refuses new work, waits for running work until ctx ends, then cancels what is left
// and waits for it to return.
func (g *registry) shutdown(ctx context.Context) {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	g.mu.Lock()
	for _, cancel := range g.work {
		cancel()
	}
	g.mu.Unlock()
	<-done
}
