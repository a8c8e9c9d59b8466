package main

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// A leased job is long work whose state every replica must see (a restore, a drill): one
// document in the jobs index is its lock, its progress and its lease. Every write is a
// compare-and-set on the version this sidecar last stored, so a sidecar that lost the document
// learns it on its next write. The owner rewrites the document every heartbeatEvery; every
// sidecar watches it, and one whose version has not changed for staleAfter on the watcher's own
// clock has a silent owner: the watcher takes the document over (compare-and-set again, so of
// two racing watchers one wins) and carries the job on or ends it. The owner stops acting before
// anyone could take over (guard), so no action of the old owner overlaps one of the new owner's;
// every request that changes Elasticsearch carries master_timeout = the deadline, so that
// Elasticsearch, too, has carried it out or given up on it by then.
//
// The timeline, with the defaults (a 30 s Elasticsearch deadline, a 5 s heartbeat):
//
//	t          the owner sends a write that is stored: its lease runs from t
//	t+40 s     guard refuses new actions (staleAfter - one deadline - one heartbeat): an action
//	           started just before ends by t+70 s at the latest
//	t+75 s     the earliest a watcher can take over (staleAfter after it first saw the version,
//	           which it cannot see before t)

// The errors of a leased job; each means one thing, whichever job it is.
var (
	// errLeaseTaken: a compare-and-set found the document changed by someone else; this
	// sidecar stops at once and writes nothing more.
	errLeaseTaken = errors.New("another sidecar changed the job's document (took the job over or ended it); this sidecar stops acting on it")
	// errLeaseExpired: this sidecar's last stored renewal is too old to start an action.
	errLeaseExpired = errors.New("this sidecar's lease on the job is too old to act on (Elasticsearch did not store its renewals in time); it stops so that no action of its overlaps another sidecar's take-over")
)

// heartbeatEvery is how often an owner renews its lease, and every sidecar reads the job documents.
const heartbeatEvery = 5 * time.Second

// staleAfter is how long an active job's document may stay unchanged before its owner counts
// as gone: two Elasticsearch deadlines (slow lease writes) plus three missed renewals.
func (s *server) staleAfter() time.Duration { return 2*s.cfg.ESTimeout + 3*heartbeatEvery }

// guardMargin is how old a lease may be for its owner to start an action: one deadline (the
// action itself) and one heartbeat earlier than anyone could take the job over.
func (s *server) guardMargin() time.Duration {
	return s.staleAfter() - s.cfg.ESTimeout - heartbeatEvery
}

// leaseStamp is what every leased document carries besides its own fields: its owner ("" once
// let go of, on shutdown, for another sidecar to take at once) and its last write's stamp.
type leaseStamp struct {
	Owner string `json:"owner"`
	docStamp
}

func (l *leaseStamp) lease() *leaseStamp { return l }

// leasedDoc is a pointer to a leased document type D, with its leaseStamp and a deep clone.
type leasedDoc[D any] interface {
	*D
	lease() *leaseStamp
	clone() D
}

// leasedJob is one leased document held by this sidecar. Only update() changes it, and only once
// Elasticsearch stored the change: the job always acts on what is stored. Writes are one at a
// time (each builds on the version the last one stored); reads of the state never wait for a
// write (no lock is held across an Elasticsearch call).
type leasedJob[D any, P leasedDoc[D]] struct {
	s     *server
	docID string
	log   *slog.Logger
	// writing is held by the one write in flight.
	writing chan struct{}
	// state is held, briefly, by whoever reads or replaces doc, ver, renewed and unconfirmed.
	state chan struct{}
	doc   D
	ver   jobVersion
	// renewed is when the last write that was stored had been sent: the lease runs from then.
	renewed time.Time
	// unconfirmed are the Revs of writes whose answer was lost and could not be read back, and
	// when each was sent: finding one stored later means that write went through.
	unconfirmed map[string]time.Time
	// stop ends the work of run() when the document was taken.
	stop context.CancelCauseFunc
}

// newLeasedJob holds doc, of backup backupID, stored at version ver (zero: not stored yet).
func newLeasedJob[D any, P leasedDoc[D]](s *server, docID string, doc D, ver jobVersion, backupID string) *leasedJob[D, P] {
	log := s.log.With("backup_id", backupID, "repository", s.cfg.Repository)
	return &leasedJob[D, P]{s: s, docID: docID, log: log, doc: doc, ver: ver,
		writing: make(chan struct{}, 1), state: make(chan struct{}, 1)}
}

// lock and unlock guard the job's state; they are never held across an Elasticsearch call.
func (j *leasedJob[D, P]) lock()   { j.state <- struct{}{} }
func (j *leasedJob[D, P]) unlock() { <-j.state }

// current returns a copy of the stored document.
func (j *leasedJob[D, P]) current() D {
	j.lock()
	defer j.unlock()
	return P(&j.doc).clone()
}

// guard fails once the lease is too old to start an action on (see the timeline above).
func (j *leasedJob[D, P]) guard() error {
	j.lock()
	renewed := j.renewed
	j.unlock()
	if time.Since(renewed) > j.s.guardMargin() {
		return errLeaseExpired
	}
	return nil
}

// confirmed is the check before each destructive request (a delete, a block, a restore, a
// snapshot): guard, then a compare-and-set write that finds the document still this sidecar's.
// An operator's end (DELETE .../restore) or a take-over since the last heartbeat is seen here,
// before the request: only a request already sent can land after it.
func (j *leasedJob[D, P]) confirmed(ctx context.Context) func() error {
	return func() error {
		if err := j.guard(); err != nil {
			return err
		}
		return j.update(ctx, func(P) {})
	}
}

// start stores doc as a new job owned by this sidecar: created (op_type=create, with the jobs
// index if need be) when ver is the zero version, else written over the finished job stored at
// ver. errLeaseTaken means another sidecar started one first.
func (j *leasedJob[D, P]) start(ctx context.Context) error {
	j.lock()
	isNew := j.ver == (jobVersion{})
	j.unlock()
	if isNew {
		if err := j.s.ensureJobsIndex(ctx); err != nil {
			return err
		}
	}
	return j.update(ctx, func(d P) { d.lease().Owner = j.s.owner })
}

// takeOver makes this sidecar the owner of the document (compare-and-set at the version read,
// so a live owner or a faster watcher keeps it: errLeaseTaken), applying change too.
func (j *leasedJob[D, P]) takeOver(ctx context.Context, change func(P)) error {
	return j.update(ctx, func(d P) { d.lease().Owner = j.s.owner; change(d) })
}

// update applies change to a copy of the document and stores it (compare-and-set); only once it
// is stored does the job see the change. It is not cancelled with the job (a stopping job must
// still record how it ended), only bounded by the Elasticsearch deadline.
func (j *leasedJob[D, P]) update(ctx context.Context, change func(P)) error {
	j.writing <- struct{}{}
	defer func() { <-j.writing }()
	for attempt := 0; ; attempt++ {
		j.lock()
		next, ver := P(&j.doc).clone(), j.ver
		j.unlock()
		change(&next)
		sent := time.Now()
		stored, err := j.s.saveDoc(context.WithoutCancel(ctx), j.docID, &next, &P(&next).lease().docStamp, ver)
		switch {
		case err == nil:
			j.lock()
			j.doc, j.ver, j.renewed, j.unconfirmed = next, stored, sent, nil
			j.unlock()
			return nil
		case errors.Is(err, errDocChanged):
			if attempt == 0 {
				adopted, rerr := j.adoptUnconfirmed(ctx)
				if rerr != nil {
					return rerr
				}
				if adopted {
					continue
				}
			}
			j.taken()
			return errLeaseTaken
		case answerLost(err):
			j.lock()
			if j.unconfirmed == nil {
				j.unconfirmed = map[string]time.Time{}
			}
			j.unconfirmed[P(&next).lease().Rev] = sent
			j.unlock()
		}
		return err
	}
}

// adoptUnconfirmed reads the stored document after a lost compare-and-set: if it is our write
// whose answer was lost (not a take-over), the job adopts it, and update() tries once more.
func (j *leasedJob[D, P]) adoptUnconfirmed(ctx context.Context) (bool, error) {
	j.lock()
	pending := len(j.unconfirmed)
	j.unlock()
	if pending == 0 {
		return false, nil
	}
	var stored D
	ver, found, err := j.s.loadDoc(context.WithoutCancel(ctx), j.docID, &stored)
	if err != nil {
		return false, err
	}
	j.lock()
	defer j.unlock()
	sent, ours := j.unconfirmed[P(&stored).lease().Rev]
	if !found || !ours || P(&stored).lease().Owner != j.s.owner {
		return false, nil
	}
	j.doc, j.ver, j.renewed, j.unconfirmed = stored, ver, sent, nil
	return true, nil
}

// taken ends the work of run() (if it runs): the document is someone else's now.
func (j *leasedJob[D, P]) taken() {
	j.lock()
	stop := j.stop
	j.unlock()
	if stop != nil {
		stop(errLeaseTaken)
	}
}

// lost tells whether the job must stop without writing anything more: its document was taken.
func lost(ctx context.Context, err error) bool {
	return errors.Is(err, errLeaseTaken) || errors.Is(context.Cause(ctx), errLeaseTaken)
}

// run runs work while the lease is renewed every heartbeatEvery. work's context ends, with the
// cause errLeaseTaken, when a write finds the document taken. The renewal has stopped when run
// returns, so that the caller's last write (how the job ended) is the last one.
func (j *leasedJob[D, P]) run(ctx context.Context, work func(context.Context) error) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	j.lock()
	j.stop = cancel
	j.unlock()
	renewing, stopRenewing := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); j.renew(renewing) }()
	err := work(ctx)
	stopRenewing()
	<-done
	return ctx, err
}

// renew rewrites the document every heartbeatEvery until ctx ends; a write in flight renews the
// lease too, so a renewal that would wait for one is skipped.
func (j *leasedJob[D, P]) renew(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case j.writing <- struct{}{}:
			<-j.writing
		default:
			continue // a write is in flight
		}
		if err := j.update(ctx, func(P) {}); err != nil && !errors.Is(err, errLeaseTaken) {
			j.log.Warn("cannot renew the lease; will retry", "doc", j.docID, "err", err)
		}
	}
}

// watchLeased runs in every sidecar: every heartbeatEvery it reads one leased document and calls
// takeOver for a job still running (active) that this process does not run (mine) and no live
// sidecar runs, by this process's own clock (clocks of different machines are never compared):
//   - this process's own job that it no longer runs (its last write failed): at once;
//   - a job whose owner let go of it (on shutdown): one deadline after the let-go was seen, so
//     that a request the owner cancelled, which Elasticsearch may still carry out until its
//     master_timeout, is over before another sidecar acts;
//   - a job whose version has not changed for staleAfter: its owner went silent.
func watchLeased[D any, P leasedDoc[D]](ctx context.Context, s *server, docID string, active func(D) bool, mine func() bool, takeOver func(context.Context, D, jobVersion) error) {
	var seen jobVersion
	var since time.Time
	for {
		var doc D
		ver, found, err := s.loadDoc(ctx, docID, &doc)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.log.Warn("cannot read a job document; will retry", "doc", docID, "err", err)
			}
		case !found || !active(doc) || mine():
			seen = jobVersion{}
		case P(&doc).lease().Owner != s.owner && ver != seen:
			seen, since = ver, time.Now()
		case P(&doc).lease().Owner == s.owner ||
			P(&doc).lease().Owner == "" && time.Since(since) >= s.cfg.ESTimeout ||
			time.Since(since) > s.staleAfter():
			if err := takeOver(ctx, doc, ver); err != nil && !errors.Is(err, errLeaseTaken) {
				s.log.Error("cannot take over a job whose sidecar stopped; will retry", "doc", docID, "err", err)
			}
			seen = jobVersion{}
		}
		if sleepCtx(ctx, heartbeatEvery) != nil {
			return
		}
	}
}

// errDocChanged: a compare-and-set found another version of a document of the jobs index.
var errDocChanged = errors.New("the document was changed by another sidecar since it was read")
