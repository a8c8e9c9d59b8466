package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// createBackup checks that the ID is free, starts part 1 and hands part 2 to finishBackup in
// the background; kind ("" or kindScheduled) goes into the metadata. It returns both names.
func (s *server) createBackup(ctx context.Context, id, kind string) ([]string, error) {
	// Within this process one ID is created once at a time; across replicas Elasticsearch's
	// refusal of a taken snapshot name decides.
	if !s.backups.claim(id) {
		return nil, idTaken(id, nil)
	}
	started := false
	defer func() {
		if !started {
			s.backups.release(id)
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
		return nil, idTaken(id, names)
	}
	version, err := s.optimizeVersion(ctx)
	if err != nil {
		return nil, err
	}
	_, part1, part2, err := s.installationIndices(ctx)
	if err != nil {
		return nil, err
	}
	if len(part1) == 0 || len(part2) == 0 {
		return nil, serverError("no Optimize indices to back up: Elasticsearch has %d import indices and %d other indices with the prefix [%s-]; an Optimize backup needs both. Check that Optimize has started at least once and that CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX is Optimize's prefix",
			len(part1), len(part2), s.cfg.IndexPrefix)
	}

	names := []string{snapshotName(id, version, 1), snapshotName(id, version, 2)}
	meta := snapshotMetadata{BackupID: id, Version: version, PartNo: 1, PartCount: partCount, CreatedBy: "optimize-backup", Kind: kind, IndexPrefix: s.cfg.IndexPrefix, BackupNonce: newNonce()}
	if err := s.startSnapshot(ctx, names[0], part1, meta); err != nil {
		if errors.Is(err, errSnapshotNameTaken) {
			// Another replica took this ID between our check and our request: the name
			// "already exists" or "is already in-progress" (or holds it with another nonce).
			return nil, idTaken(id, names[:1])
		}
		return nil, err
	}
	meta.PartNo = 2
	started = true
	if !s.backups.start(id, func(ctx context.Context) { s.finishBackup(ctx, id, names, part2, meta) }) {
		// Shutdown began between part 1 and here: part 2 will not follow.
		return names, fmt.Errorf("part 1 (%s) was started, but the sidecar is stopping, so part 2 will not be: the backup will be INCOMPLETE; delete it and take another", names[0])
	}
	return names, nil
}

// idTaken is the 409 of a backup ID that is taken: by the snapshots existing, or, with none,
// by a create of the ID running in this process.
func idTaken(id string, existing []string) error {
	if len(existing) == 0 {
		return conflict("A backup with ID [%s] is already being created; choose another ID or wait for it and check its state.", id).because(errIDTaken)
	}
	return conflict("A backup with ID [%s] already exists. Found snapshots: [%s]", id, strings.Join(existing, ", ")).because(errIDTaken)
}

// part2PollLimit is the longest wait between two reads of part 1 before part 2 starts.
const part2PollLimit = 50 * time.Millisecond

// finishBackup waits for part 1 to end and then starts part 2, so import positions in the
// backup are never newer than the data they describe; then it follows part 2 until it ends
// (watchPart2). If this process stops first, part 2 is never started and the backup is reported
// INCOMPLETE once the grace period has passed. What goes wrong is recorded (noteBackup), so that
// every replica's GET says why the backup is INCOMPLETE.
func (s *server) finishBackup(ctx context.Context, id string, names, part2 []string, meta snapshotMetadata) {
	log := s.log.With("backup_id", id, "repository", s.cfg.Repository)
	part1, ok := s.waitPart1(ctx, log, id, names[0])
	if !ok {
		return
	}
	if ended := time.UnixMilli(part1.EndMillis); s.now().Sub(ended) > s.cfg.Part2Grace {
		// Every replica reports this backup INCOMPLETE by now: a part 2 started this late could
		// hold data from after a restore that trusted that.
		log.Warn("part 1 ended longer ago than OPTIMIZE_BACKUP_PART2_GRACE; part 2 will not be started, the backup is INCOMPLETE", "snapshot", names[0])
		s.noteBackup(ctx, id, []snapshot{part1}, 2, fmt.Sprintf("it was not started: part 1 ended at %s, and the sidecar learned that only at %s, after OPTIMIZE_BACKUP_PART2_GRACE (%s), when every replica already reported the backup INCOMPLETE (Elasticsearch answered too slowly).",
			noteTime(ended), noteTime(s.now()), s.cfg.Part2Grace))
		return
	}
	if err := s.startSnapshot(ctx, names[1], part2, meta); err != nil {
		log.Error("cannot start part 2; the backup will be reported INCOMPLETE", "snapshot", names[1], "err", err)
		s.noteBackup(ctx, id, []snapshot{part1}, 2, fmt.Sprintf("Elasticsearch refused to start it at %s: %v.", noteTime(s.now()), err))
		return
	}
	// A DELETE on another replica may have removed part 1 just before: then this part 2 is all
	// that is left of the backup, and goes too.
	if _, found, err := s.snapshotByName(ctx, names[0]); err == nil && !found {
		log.Warn("part 1 was deleted while part 2 started; deleting part 2", "snapshot", names[1])
		if err := s.deleteSnapshots(ctx, names[1:2]); err != nil {
			log.Error("cannot delete part 2 of a deleted backup", "snapshot", names[1], "err", err)
			if left, found, rerr := s.snapshotByName(ctx, names[1]); rerr == nil && found {
				s.noteBackup(ctx, id, []snapshot{left}, 1, fmt.Sprintf("a DELETE removed it at about %s, while part 2 was being started, and deleting part 2 too failed: %v.", noteTime(s.now()), err))
			}
		}
		return
	}
	log.Info("part 2 started", "snapshot", names[1])
	// Followed apart from the part-2 starts: a shutdown does not wait for a snapshot to end,
	// and no restore waits for this process's in-flight backups to end.
	if !s.watches.claim(id) || !s.watches.start(id, func(ctx context.Context) { s.watchPart2(ctx, id, names, part1) }) {
		log.Warn("part 2 is not followed (the sidecar is stopping, or still follows an earlier part 2 of this ID): should it vanish, GET will not say why", "snapshot", names[1])
	}
}

// waitPart1 reads part 1 until it has ended and returns it; false when part 2 is not to be
// started: part 1 did not succeed or is gone (its state or its absence says why), or this
// process is stopping, which is recorded.
func (s *server) waitPart1(ctx context.Context, log *slog.Logger, id, name string) (snapshot, bool) {
	// Part 2 must start within 100 ms of part 1's end (the backup's wall time is what an
	// operator waits for), so part 1, which holds only the small import indices, is read by
	// name at least every part2PollLimit; OPTIMIZE_BACKUP_POLL_INTERVAL can only make it sooner.
	started := time.Now()
	var last []snapshot // the last read of part 1, for a note
	for {
		if err := sleepCtx(ctx, pollWait(time.Since(started), min(part2PollLimit, s.cfg.PollInterval))); err != nil {
			log.Warn("stopped before part 2 was started; the backup will be reported INCOMPLETE", "snapshot", name, "err", context.Cause(ctx))
			s.noteStopped(ctx, id, name, last)
			return snapshot{}, false
		}
		part1, found, err := s.snapshotByName(ctx, name)
		switch {
		case err != nil:
			log.Warn("cannot read the state of part 1; will retry", "snapshot", name, "err", err)
			continue
		case !found:
			log.Warn("part 1 disappeared (deleted?); part 2 will not be started", "snapshot", name)
			return snapshot{}, false
		}
		last = []snapshot{part1}
		switch state := part1.State; state {
		case "IN_PROGRESS":
			continue
		case "SUCCESS":
			return part1, true
		default:
			log.Warn("part 1 did not succeed; part 2 will not be started", "snapshot", name, "status", state)
			return snapshot{}, false
		}
	}
}

// noteStopped records that part 2 was never started because this process stopped before part
// 1 ended; part1 is the last read of part 1, if any. A DELETE also stops the wait (it deletes
// the backup): then there is nothing to record.
func (s *server) noteStopped(ctx context.Context, id, name string, part1 []snapshot) {
	if !s.backups.stopping() {
		return
	}
	if len(part1) == 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), noteTimeout)
		defer cancel()
		if sn, found, err := s.snapshotByName(rctx, name); err == nil && found {
			part1 = []snapshot{sn}
		}
	}
	s.noteBackup(ctx, id, part1, 2, fmt.Sprintf("it was never started: the sidecar that started part 1 (%s) was stopped at %s, before part 1 ended.", s.owner, noteTime(s.now())))
}

// watchPart2 follows part 2 until it has ended. Elasticsearch drops a snapshot that it cannot
// finish (the repository became unwritable, or full) without a trace in its API: if part 2
// vanishes, this records so, with the shard failures Elasticsearch last reported for it.
func (s *server) watchPart2(ctx context.Context, id string, names []string, part1 snapshot) {
	log := s.log.With("backup_id", id, "repository", s.cfg.Repository, "snapshot", names[1])
	started, startedAt := time.Now(), s.now()
	var failures []snapshotFailure
	failing := false // logged once per run of failed reads, not every poll
	for sleepCtx(ctx, pollWait(time.Since(started), s.cfg.PollInterval)) == nil {
		part2, found, err := s.snapshotByName(ctx, names[1])
		switch {
		case err != nil:
			if !failing {
				log.Warn("cannot read the state of part 2; will retry", "err", err)
			}
			failing = true
			continue
		case found && part2.State == "IN_PROGRESS":
			failing = false
			if len(part2.Failures) > 0 {
				failures = part2.Failures
			}
			continue
		case found:
			return // it ended, in the repository: its state says the rest
		}
		s.notePart2Vanished(ctx, log, id, names, startedAt, failures)
		return
	}
}

// notePart2Vanished records that part 2 vanished after it started, unless the backup was
// deleted (part 1 is gone too) or a DELETE of it is under way (which records what it did).
func (s *server) notePart2Vanished(ctx context.Context, log *slog.Logger, id string, names []string, started time.Time, failures []snapshotFailure) {
	part1, found, err := s.snapshotByName(ctx, names[0])
	if err != nil || !found {
		return
	}
	if marks, _, err := s.loadMarks(ctx); err != nil || s.markedForDelete(marks, id) {
		return
	}
	why := "Elasticsearch reported no failed shard for it; its log says why (search it for the snapshot's name)"
	if listed := shardFailures(failures); listed != "" {
		why = "Elasticsearch last reported these failed shards: " + listed
	}
	log.Error("part 2 vanished from the repository before it completed; the backup is INCOMPLETE", "reason", why)
	s.noteBackup(ctx, id, []snapshot{part1}, 2, fmt.Sprintf("it started at %s, then vanished from the repository before it completed: Elasticsearch could not write it to the repository (check that the repository is writable and has room). %s.",
		noteTime(started), why))
}
