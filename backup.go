package main

import (
	"context"
	"errors"
	"fmt"
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
// backup are never newer than the data they describe. If this process stops first, part 2 is
// never started and the backup is reported INCOMPLETE once the grace period has passed.
func (s *server) finishBackup(ctx context.Context, id string, names, part2 []string, meta snapshotMetadata) {
	log := s.log.With("backup_id", id, "repository", s.cfg.Repository)
	// Part 2 must start within 100 ms of part 1's end (the backup's wall time is what an
	// operator waits for), so part 1, which holds only the small import indices, is read by
	// name at least every part2PollLimit; OPTIMIZE_BACKUP_POLL_INTERVAL can only make it sooner.
	started := time.Now()
	for {
		if err := sleepCtx(ctx, pollWait(time.Since(started), min(part2PollLimit, s.cfg.PollInterval))); err != nil {
			log.Warn("stopped before part 2 was started; the backup will be reported INCOMPLETE", "snapshot", names[0], "err", context.Cause(ctx))
			return
		}
		part1, found, err := s.snapshotByName(ctx, names[0])
		switch {
		case err != nil:
			log.Warn("cannot read the state of part 1; will retry", "snapshot", names[0], "err", err)
			continue
		case !found:
			log.Warn("part 1 disappeared (deleted?); part 2 will not be started", "snapshot", names[0])
			return
		}
		switch state := part1.State; state {
		case "IN_PROGRESS":
			continue
		case "SUCCESS":
			if ended := time.UnixMilli(part1.EndMillis); s.now().Sub(ended) > s.cfg.Part2Grace {
				// Every replica reports this backup INCOMPLETE by now: a part 2 started this
				// late could hold data from after a restore that trusted that.
				log.Warn("part 1 ended longer ago than OPTIMIZE_BACKUP_PART2_GRACE; part 2 will not be started, the backup is INCOMPLETE", "snapshot", names[0])
				return
			}
			if err := s.startSnapshot(ctx, names[1], part2, meta); err != nil {
				log.Error("cannot start part 2; the backup will be reported INCOMPLETE", "snapshot", names[1], "err", err)
				return
			}
			// A DELETE on another replica may have removed part 1 just before: then this part 2
			// is all that is left of the backup, and goes too.
			if _, found, err := s.snapshotByName(ctx, names[0]); err == nil && !found {
				log.Warn("part 1 was deleted while part 2 started; deleting part 2", "snapshot", names[1])
				if err := s.deleteSnapshots(ctx, names[1:2]); err != nil {
					log.Error("cannot delete part 2 of a deleted backup", "snapshot", names[1], "err", err)
				}
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
