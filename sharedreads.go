package main

import (
	"context"
	"fmt"
	"sync"
)

// sharedReads lets concurrent GETs of the same backup share one Elasticsearch read, so that 64
// dashboards polling a backup cost one request per round trip instead of 64. A caller never
// gets an answer Elasticsearch may have computed before it arrived: a GET that arrives while a
// read of its key is under way does not join it (it may predate a DELETE the caller saw), but
// waits for the next one, which starts when the running one ends and serves everybody who
// arrived meanwhile. So every answer is as fresh as a request of its own. Only reads in flight
// are held; a caller may wait for two, each bounded by the Elasticsearch timeout.
type sharedReads[T any] struct {
	mu   sync.Mutex
	keys map[string]*keyReads[T]
}

// keyReads are one key's read under way and the read that follows it, if anybody waits.
type keyReads[T any] struct {
	running, next *sharedRead[T]
}

// sharedRead is one read and its outcome, which done announces.
type sharedRead[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiting int // callers waiting for it (tests look, see sharedReads.waiting)
	// ctx and read are the first waiter's: detached from its cancellation (one caller hanging
	// up must not fail the others), with its values (the request ID for X-Opaque-Id).
	ctx  context.Context
	read func(context.Context) (T, error)
}

// do returns read's result for key from a read that started after this call did (its own, or
// the next shared one). The caller must not change what it gets: other callers hold it too.
func (g *sharedReads[T]) do(ctx context.Context, key string, read func(context.Context) (T, error)) (T, error) {
	g.mu.Lock()
	if g.keys == nil {
		g.keys = map[string]*keyReads[T]{}
	}
	k := g.keys[key]
	if k == nil {
		// Nobody reads this key: read in this goroutine, with this caller's own context.
		own := &sharedRead[T]{done: make(chan struct{}), ctx: ctx, read: read, waiting: 1}
		g.keys[key] = &keyReads[T]{running: own}
		g.mu.Unlock()
		g.run(key, own, true)
		return own.val, own.err
	}
	if k.next == nil {
		k.next = &sharedRead[T]{done: make(chan struct{}), ctx: context.WithoutCancel(ctx), read: read}
	}
	next := k.next
	next.waiting++
	g.mu.Unlock()
	select {
	case <-next.done:
		return next.val, next.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// run carries out one read, announces its outcome, then starts the read that waited for it, if
// any; the last read of a key forgets the key. owned tells that the read runs in its only
// caller's goroutine.
func (g *sharedReads[T]) run(key string, r *sharedRead[T], owned bool) {
	defer func() {
		// A read that panics still ends and starts the read its followers wait for. Its own
		// caller's panic goes on to net/http's recovery; a shared read's, in a goroutine of
		// its own, would end the process, so its waiters get an error instead.
		p := recover()
		if p != nil {
			var zero T
			r.val, r.err = zero, fmt.Errorf("reading from Elasticsearch failed unexpectedly (%v); try again, and report this with the sidecar's log", p)
		}
		close(r.done)
		g.mu.Lock()
		if k := g.keys[key]; k.next == nil {
			delete(g.keys, key)
		} else {
			k.running, k.next = k.next, nil
			go g.run(key, k.running, false)
		}
		g.mu.Unlock()
		if p != nil && owned {
			panic(p)
		}
	}()
	r.val, r.err = r.read(r.ctx)
}
