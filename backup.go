package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// errNoOptimizeIndices means there is nothing to back up for the configured prefix.
var errNoOptimizeIndices = errors.New("no Optimize indices to back up")

// createBackup checks that the ID is free, resolves the two index sets and the version tag,
// starts part 1 and hands the rest to a background goroutine that starts part 2 once part 1
// has finished. It returns the names of both snapshots.
func (s *server) createBackup(ctx context.Context, id string) ([]string, error) {
	// Within this process one ID is created once at a time; across replicas Elasticsearch's
	// refusal of a taken snapshot name decides.
	if !s.inflight.claim(id) {
		return nil, &conflictError{id: id}
	}
	started := false
	defer func() {
		if !started {
			s.inflight.release(id)
		}
	}()

	existing, err := s.backupSnapshots(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 {
		names := make([]string, len(existing))
		for i, snap := range existing {
			names[i] = snap.Name
		}
		return nil, &conflictError{id: id, existing: names}
	}
	version, err := s.optimizeVersion(ctx)
	if err != nil {
		return nil, err
	}
	part1, part2, err := s.optimizeIndices(ctx)
	if err != nil {
		return nil, err
	}
	if len(part1) == 0 || len(part2) == 0 {
		return nil, fmt.Errorf("%w: Elasticsearch has %d import indices and %d other indices with the prefix [%s-]; an Optimize backup needs both. Check that Optimize has started at least once and that CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX is Optimize's prefix",
			errNoOptimizeIndices, len(part1), len(part2), s.cfg.IndexPrefix)
	}

	names := []string{snapshotName(id, version, 1), snapshotName(id, version, 2)}
	meta := snapshotMetadata{BackupID: id, Version: version, PartNo: 1, PartCount: partCount, CreatedBy: "optimize-backup"}
	if err := s.startSnapshot(ctx, names[0], part1, meta); err != nil {
		var ee *esError
		if errors.As(err, &ee) && ee.Type == "snapshot_name_already_in_use_exception" {
			// Another replica took this ID between our check and our request: the name
			// "already exists" or "is already in-progress".
			return nil, &conflictError{id: id, existing: []string{names[0]}}
		}
		return nil, err
	}
	meta.PartNo = 2
	started = true
	s.inflight.start(id, func(ctx context.Context) { s.finishBackup(ctx, id, names, part2, meta) })
	return names, nil
}

// finishBackup waits for part 1 to end and then starts part 2, so import positions in the
// backup are never newer than the data they describe. If this process stops first, part 2 is
// never started and the backup is reported INCOMPLETE once the grace period has passed.
func (s *server) finishBackup(ctx context.Context, id string, names, part2 []string, meta snapshotMetadata) {
	log := s.log.With("backup_id", id, "repository", s.cfg.Repository)
	ticker := time.NewTicker(s.cfg.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Warn("stopped before part 2 was started; the backup will be reported INCOMPLETE", "snapshot", names[0], "err", context.Cause(ctx))
			return
		case <-ticker.C:
		}
		answer, err := s.getSnapshots(ctx, names[0], 0, "", []string{"snapshots.state", "failures"})
		var ee *esError
		switch {
		case errors.As(err, &ee) && ee.Status == http.StatusNotFound:
			log.Warn("part 1 disappeared (deleted?); part 2 will not be started", "snapshot", names[0], "err", err)
			return
		case err != nil:
			log.Warn("cannot read the state of part 1; will retry", "snapshot", names[0], "err", err)
			continue
		case len(answer.Snapshots) == 0:
			log.Warn("part 1 disappeared (deleted?); part 2 will not be started", "snapshot", names[0])
			return
		}
		switch state := answer.Snapshots[0].State; state {
		case "IN_PROGRESS":
			continue
		case "SUCCESS":
			if err := s.startSnapshot(ctx, names[1], part2, meta); err != nil {
				log.Error("cannot start part 2; the backup will be reported INCOMPLETE", "snapshot", names[1], "err", err)
				return
			}
			log.Info("part 2 started", "snapshot", names[1])
			return
		default:
			log.Warn("part 1 did not succeed; part 2 will not be started", "snapshot", names[0], "status", state)
			return
		}
	}
}

// inflight tracks the backups this process is still going to start part 2 of. It is the only
// state the sidecar keeps in memory; everything else is read from Elasticsearch.
type inflight struct {
	mu     sync.Mutex
	ids    map[string]context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

func newInflight() *inflight { return &inflight{ids: map[string]context.CancelFunc{}} }

// claim reserves an ID; false if it is already reserved or the process is stopping.
func (f *inflight) claim(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, taken := f.ids[id]; taken || f.closed {
		return false
	}
	f.ids[id] = func() {}
	return true
}

// release gives up a claimed ID.
func (f *inflight) release(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ids, id)
}

// start runs work for a claimed ID in the background and releases the ID when it returns.
func (f *inflight) start(id string, work func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	f.mu.Lock()
	f.ids[id] = cancel
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		defer cancel()
		defer f.release(id)
		work(ctx)
	}()
}

// has tells whether this process is still working on the ID.
func (f *inflight) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.ids[id]
	return ok
}

// count is how many IDs are in flight.
func (f *inflight) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ids)
}

// cancel stops the background work of one ID, if any.
func (f *inflight) cancel(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cancel, ok := f.ids[id]; ok {
		cancel()
	}
}

// shutdown refuses new work, waits for running work until ctx ends, then cancels what is left.
func (f *inflight) shutdown(ctx context.Context) {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	f.mu.Lock()
	for _, cancel := range f.ids {
		cancel()
	}
	f.mu.Unlock()
	<-done
}
