package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// How the sidecar follows work Elasticsearch does for it, for the restore job and the drill alike.

// followRecovery reads the recovery of a part's indices until every shard of its snapshot is
// done, handing each reading to progress; restored are the indices the reader restored, by UUID
// (nil: every index of the part is the reader's, as a drill's temporary indices are). The wait
// ends with a *shardFailure for an index of the reader's that Elasticsearch will not recover,
// with an error for an index of the part's name that is not the reader's (another UUID), and
// when watch sees no progress for its limit.
func (s *server) followRecovery(ctx context.Context, log *slog.Logger, part planPart, restored map[string]string, watch *stallWatch, progress func(restoreProgress) error) error {
	return s.waitUntil(ctx, log, watch, func() (bool, string, error) {
		rec, err := s.recovery(ctx, part.Indices)
		if err != nil {
			return false, "", err
		}
		health, err := s.indicesHealth(ctx, part.Indices)
		if err != nil {
			return false, "", err
		}
		if err := foreignIndex(part.Indices, health, restored); err != nil {
			return false, "", err
		}
		p := restoreProgressOf(part, rec, restored)
		if err := progress(p); err != nil {
			return false, "", err
		}
		if p.State == restoreCompleted {
			return true, "", nil
		}
		if err := failedIndices(part.Indices, health, restored, time.Now(), s.cfg.RestoreNoCopyWait); err != nil {
			return false, "", err
		}
		return false, fmt.Sprintf("%d of %d shards, %d of %d bytes%s", p.ShardsDone, p.ShardsTotal, p.BytesRecovered, p.BytesTotal, unassignedSummary(part.Indices, health)), nil
	})
}

// stallWatch is how a wait knows whether its work moves: when the progress it reads last
// changed, and since when the work is waited for. One outlives the retries of a wait, so that a
// passing fault (a 429, a lost answer, an index not there yet) restarts neither the stall
// timeout nor the "since" of the logs and of the job's status.
type stallWatch struct {
	what         string
	limit        time.Duration // 0: none
	since, moved time.Time
	progress     string
}

// newStallWatch watches work described by what, from now on, with this stall limit (0: none).
func newStallWatch(what string, limit time.Duration) *stallWatch {
	now := time.Now()
	return &stallWatch{what: what, limit: limit, since: now, moved: now}
}

// see records one reading of the progress.
func (w *stallWatch) see(progress string, now time.Time) {
	if progress != w.progress {
		w.progress, w.moved = progress, now
	}
}

// stalled is the error of work whose progress has not changed for the limit, else nil.
func (w *stallWatch) stalled(now time.Time) error {
	if w.limit == 0 || now.Sub(w.moved) <= w.limit {
		return nil
	}
	return fmt.Errorf("%s made no progress for %v (OPTIMIZE_BACKUP_RESTORE_STALL_TIMEOUT): %s; see GET _cluster/allocation/explain",
		w.what, w.limit, cmp.Or(w.progress, "its progress could not be read"))
}

// waitUntil polls work Elasticsearch does (a snapshot, a restore) until it is done or fails,
// OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT passes, or watch sees it stalled. It reads sooner while
// the work is young (pollWait), and logs what it waits for at least once a minute, so that no
// wait is silent.
func (s *server) waitUntil(ctx context.Context, log *slog.Logger, watch *stallWatch, poll func() (done bool, progress string, err error)) error {
	started := time.Now()
	logged := started
	for {
		done, progress, err := poll()
		if err != nil || done {
			return err
		}
		now := time.Now()
		watch.see(progress, now)
		if now.Sub(logged) >= time.Minute {
			log.Info("waiting", "for", watch.what, "progress", progress, "since", watch.since.UTC().Format(time.RFC3339))
			logged = now
		}
		if now.Sub(started) > s.cfg.RestoreWaitTimeout {
			return fmt.Errorf("%s is not done after %v (OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT): %s", watch.what, s.cfg.RestoreWaitTimeout, progress)
		}
		if err := watch.stalled(now); err != nil {
			return err
		}
		if err := sleepCtx(ctx, pollWait(now.Sub(started), s.cfg.PollInterval)); err != nil {
			return err
		}
	}
}

// restoreProgressOf is how far the restore of one snapshot is (a pure function): its primaries
// DONE recovering from exactly this snapshot, out of its shards, and their bytes; a primary of an
// index the reader restored (restored; nil: all) that has since moved or restarted (a peer or
// local recovery) counts too. The caller checked that each such index is the one restored (UUID).
func restoreProgressOf(part planPart, rec recoveryShards, restored map[string]string) restoreProgress {
	p := restoreProgress{SnapshotName: part.Snapshot, State: restoreRunning, ShardsTotal: part.Shards}
	for _, ix := range part.Indices {
		mine := restored == nil || restored[ix] != ""
		done := map[int]bool{} // a relocating primary shows twice (source and target): count its shard once
		for _, sh := range rec[ix].Shards {
			fromPart := sh.Type == "SNAPSHOT" && sh.Source.Snapshot == part.Snapshot
			// An empty store is a new index, not one restored: it never counts.
			moved := (sh.Type == "PEER" || sh.Type == "EXISTING_STORE") && mine
			if !sh.Primary || !fromPart && !moved {
				continue
			}
			if fromPart {
				p.BytesTotal += sh.Index.Size.Total
				p.BytesRecovered += sh.Index.Size.Recovered
			}
			if sh.Stage == "DONE" && !done[sh.ID] {
				done[sh.ID] = true
				p.ShardsDone++
			}
		}
	}
	if p.ShardsTotal > 0 && p.ShardsDone >= p.ShardsTotal {
		p.State = restoreCompleted
	}
	return p
}

// foreignIndex fails if an index the reader restored (restored, by UUID) now has another UUID:
// something deleted it and created another of the name, which is no one's to count or repair.
func foreignIndex(indices []string, health map[string]indexHealth, restored map[string]string) error {
	for _, ix := range indices {
		if h, exists := health[ix]; exists && restored[ix] != "" && h.UUID != restored[ix] {
			return errForeign(ix, h.UUID, restored[ix])
		}
	}
	return nil
}

// errForeign is the error of an index of a restored index's name that is another index.
func errForeign(ix, uuid, restored string) error {
	return fmt.Errorf("index %s is not the index this restore created (UUID %s, restored %s): something deleted it and created another (is Optimize running?); it was left as it is", ix, uuid, restored)
}

// failedIndex is an index whose restore Elasticsearch will not finish by itself: gone, or with a
// primary whose allocation or recovery failed (a node that crashed mid-restore cut its shard's
// files off, and recovering them from the local store fails).
type failedIndex struct {
	Index, UUID string
	// Reason is Elasticsearch's reason, or what the sidecar saw.
	Reason string
}

// shardFailure is the error of a wait that found failed indices.
type shardFailure struct{ failed []failedIndex }

func (e *shardFailure) Error() string {
	msg := fmt.Sprintf("index %s cannot be recovered by Elasticsearch (%s)", e.failed[0].Index, e.failed[0].Reason)
	if len(e.failed) > 1 {
		var others []string
		for _, f := range e.failed[1:] {
			others = append(others, f.Index)
		}
		msg += fmt.Sprintf(", nor can %s", strings.Join(others, ", "))
	}
	return msg
}

// unassignedSummary says which primaries of these indices are unassigned and why, as
// Elasticsearch says (reason, allocation status, attempts), for the logs of a wait: the
// operator sees what Elasticsearch waits for without asking it.
func unassignedSummary(indices []string, health map[string]indexHealth) string {
	var parts []string
	for _, ix := range indices {
		for _, u := range health[ix].Unassigned {
			parts = append(parts, fmt.Sprintf("%s (%s, %s, %d attempts, %d in-sync copies)", ix, u.Reason, u.AllocationStatus, u.FailedAttempts, u.InSync))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; unassigned primaries: " + strings.Join(parts, ", ")
}

// failedIndices returns those of these indices that Elasticsearch will not restore by itself,
// as a *shardFailure, or nil; restored are the caller's indices, by UUID (nil: all). A primary
// is failed when Elasticsearch tried, failed and will not try again (ALLOCATION_FAILED with
// deciders_no or no_valid_shard_copy: its retries are used up), or when no node has held a copy
// for noCopyWait (OPTIMIZE_BACKUP_RESTORE_NO_COPY_WAIT). The cluster state cannot tell a copy a
// crash cut off from one on a node away for a moment: on the real node, a shard whose restore
// had barely begun comes back CLUSTER_RECOVERED, no_valid_shard_copy, with one in-sync copy that
// no longer exists. The default, 2m, is twice Elasticsearch's own wait for a node that left
// (index.unassigned.node_left.delayed_timeout); too short costs a needless restore of the index
// from its snapshot, never data. One it has yet to allocate (fetching its store after a
// restart, throttled, delayed, retrying after a first failure) is slow. It is pure.
func failedIndices(indices []string, health map[string]indexHealth, restored map[string]string, now time.Time, noCopyWait time.Duration) error {
	var failed []failedIndex
	for _, ix := range indices {
		h, exists := health[ix]
		switch {
		case restored != nil && restored[ix] == "", exists && restored != nil && h.UUID != restored[ix]:
			continue // not an index the caller created: never its to repair (see foreignIndex)
		case !exists && restored == nil:
			failed = append(failed, failedIndex{Index: ix, Reason: "the index does not exist: its restore never created it, or something deleted it"})
			continue
		case !exists:
			failed = append(failed, failedIndex{Index: ix, Reason: "the index is gone: something deleted it"})
			continue
		}
		for _, u := range h.Unassigned {
			noCopy := u.AllocationStatus == "no_valid_shard_copy"
			gaveUp := u.Reason == "ALLOCATION_FAILED" && (noCopy || u.AllocationStatus == "deciders_no")
			if gaveUp || noCopy && !u.At.IsZero() && now.Sub(u.At) > noCopyWait {
				failed = append(failed, failedIndex{Index: ix, UUID: h.UUID, Reason: fmt.Sprintf("primary shard unassigned, %s %s after %d attempts: %s", u.Reason, u.AllocationStatus, u.FailedAttempts, esReasonOf(u.Details))})
				break
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &shardFailure{failed}
}

// esReasonOf shortens Elasticsearch's unassigned_info.details (a message and a stack trace)
// to its first line and its root cause.
func esReasonOf(details string) string {
	lines := strings.Split(details, "\n")
	reason := strings.TrimSpace(lines[0])
	for _, l := range lines[1:] {
		if cause, ok := strings.CutPrefix(strings.TrimSpace(l), "Caused by: "); ok {
			reason = strings.TrimSpace(lines[0]) + " ... caused by " + cause
		}
	}
	if len(reason) > 600 {
		reason = reason[:600] + "..."
	}
	if reason == "" {
		return "no details"
	}
	return reason
}

// pollWait is how long to wait before reading again the state of work (a snapshot, a
// restore) that began elapsed ago: a fiftieth of elapsed, at least 20 ms and at most limit.
// Work is noticed done at most about 2 % of its duration (and never more than limit) after it
// ended, so short work is not made to look long by a fixed interval, while long work is read
// no more often than every limit. (A twentieth left a 10 s restore part up to 0.5 s unnoticed:
// 5 % of a restore's wall time, issue 13's whole allowance.)
func pollWait(elapsed, limit time.Duration) time.Duration {
	return min(max(elapsed/50, 20*time.Millisecond), limit)
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
