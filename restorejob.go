package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// The restore job: one forward pass over the plan the checks fixed.
//
//	safety-backup   write block on the indices to replace, then a safety backup of exactly
//	                them, waited for until every part is SUCCESS
//	confirm         the backup is read again: still COMPLETED, both parts, the same names
//	delete-indices  exactly the planned indices, all of which the safety backup holds
//	restore-part-N  each snapshot's indices (and aliases), followed through _recovery
//
// Until delete-indices nothing is lost by stopping: the job then FAILs and lifts its write
// block. From delete-indices on, a stopped job is resumed by the next sidecar that sees it.

// The steps of a restore job, in order.
const (
	stepStarting = "starting"
	stepSafety   = "safety-backup"
	stepConfirm  = "confirm"
	stepDelete   = "delete-indices"
	stepDone     = "done"
)

// restorePartStep is the step name of restoring part n (1-based).
func restorePartStep(n int) string { return fmt.Sprintf("restore-part-%d", n) }

// pastPointOfNoReturn tells whether a job at this step may have deleted or restored indices:
// from there on it must be finished, not abandoned.
func pastPointOfNoReturn(step string) bool {
	return step == stepDelete || strings.HasPrefix(step, "restore-part-")
}

// partDone tells whether the job at step has finished restoring part n.
func partDone(step string, n int) bool {
	if step == stepDone {
		return true
	}
	var cur int
	if _, err := fmt.Sscanf(step, "restore-part-%d", &cur); err != nil {
		return false
	}
	return cur > n
}

// jobRun is a restore job this process runs: its document and version in Elasticsearch.
type jobRun struct {
	s     *server
	doc   jobDoc
	ver   jobVersion
	saved time.Time
	log   *slog.Logger
}

// save writes the job (compare-and-set); errJobChanged means another sidecar took it over. It
// is not cancelled with the job, so that a stopping job can still record how it stopped.
func (r *jobRun) save(ctx context.Context) error {
	ver, err := r.s.saveJob(context.WithoutCancel(ctx), &r.doc, r.ver)
	if err != nil {
		return err
	}
	r.ver, r.saved = ver, time.Now()
	return nil
}

// heartbeat saves the job when the last write is older than heartbeatEvery.
func (r *jobRun) heartbeat(ctx context.Context) error {
	if time.Since(r.saved) < heartbeatEvery {
		return nil
	}
	return r.save(ctx)
}

// step moves the job to a step and saves it before the step acts.
func (r *jobRun) step(ctx context.Context, name string) error {
	r.doc.State, r.doc.Step = restoreRunning, name
	return r.save(ctx)
}

// startRestore takes this installation's restore lock in Elasticsearch with the plan, and runs
// the job in the background. A job that is active anywhere refuses it (409).
func (s *server) startRestore(ctx context.Context, id string, plan restorePlan) (restoreJob, error) {
	busy := func(msg string) error {
		return &restoreConflictError{checks: []restoreCheck{{Name: "nothingRunning", Message: msg}}}
	}
	if !s.restores.claim(restoreKey) {
		return restoreJob{}, busy("Another restore is running in this sidecar; wait until it has finished.")
	}
	started := false
	defer func() {
		if !started {
			s.restores.release(restoreKey)
		}
	}()
	old, ver, found, err := s.loadJob(ctx)
	if err != nil {
		return restoreJob{}, err
	}
	if found && old.active() {
		return restoreJob{}, busy(fmt.Sprintf("The restore of backup [%s] is %s (step %s); wait until it has finished.", old.BackupID, old.State, old.Step))
	}
	if !found {
		if err := s.ensureJobsIndex(ctx); err != nil {
			return restoreJob{}, err
		}
	}
	run := &jobRun{s: s, ver: ver, log: s.log.With("backup_id", id, "repository", s.cfg.Repository)}
	run.doc = jobDoc{
		restoreJob: restoreJob{BackupID: id, State: restorePending, Step: stepStarting, StartTime: ptr(s.now().UTC())},
		Repository: s.cfg.Repository,
		Plan:       plan,
		Owner:      s.owner,
	}
	for _, p := range plan.Parts {
		run.doc.Snapshots = append(run.doc.Snapshots, restoreProgress{SnapshotName: p.Snapshot, State: restorePending, ShardsTotal: p.Shards})
	}
	if err := run.save(ctx); err != nil {
		if errors.Is(err, errJobChanged) {
			return restoreJob{}, busy("Another sidecar started a restore a moment ago; see GET .../restore of its backup.")
		}
		return restoreJob{}, err
	}
	started = true
	run.log.Info("restore started", "replace", len(plan.Replace))
	job := run.doc.restoreJob
	job.Snapshots = slices.Clone(job.Snapshots)
	s.restores.start(restoreKey, run.run)
	return job, nil
}

// resumeRestore takes over this installation's active restore job if its owner let go of it or
// went silent. A job past the point of no return is carried on; an earlier one is FAILED (its
// write block lifted), since nothing was deleted yet and its checks may no longer hold.
func (s *server) resumeRestore(ctx context.Context) error {
	if !s.restores.claim(restoreKey) {
		return nil // this process runs it
	}
	started := false
	defer func() {
		if !started {
			s.restores.release(restoreKey)
		}
	}()
	doc, ver, found, err := s.loadJob(ctx)
	if err != nil || !found || !doc.active() || !s.stale(doc) {
		return err
	}
	if doc.Repository != s.cfg.Repository {
		return fmt.Errorf("the restore job of backup [%s] uses repository [%s], this sidecar [%s]; a sidecar with CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME=%s resumes it", doc.BackupID, doc.Repository, s.cfg.Repository, doc.Repository)
	}
	previous := doc.Owner
	doc.Owner = s.owner
	run := &jobRun{s: s, doc: doc, ver: ver, log: s.log.With("backup_id", doc.BackupID, "repository", s.cfg.Repository)}
	if err := run.save(ctx); err != nil {
		if errors.Is(err, errJobChanged) {
			return nil // another sidecar took it over first
		}
		return err
	}
	started = true
	run.log.Warn("taking over the restore job", "previous_owner", previous, "step", doc.Step)
	s.restores.start(restoreKey, run.resume)
	return nil
}

// run carries out a new job.
func (r *jobRun) run(ctx context.Context) { r.finish(ctx, r.steps(ctx)) }

// resume carries on a job taken over from another sidecar.
func (r *jobRun) resume(ctx context.Context) {
	if !pastPointOfNoReturn(r.doc.Step) {
		r.finish(ctx, fmt.Errorf("the sidecar running this restore stopped at step %s, before anything was deleted; nothing was changed, start the restore again", r.doc.Step))
		return
	}
	r.finish(ctx, r.steps(ctx))
}

// finish records how the job ended. A job stopped by shutdown past the point of no return is
// handed over instead (owner cleared), so that the next sidecar resumes it at once.
func (r *jobRun) finish(ctx context.Context, err error) {
	if errors.Is(err, errJobChanged) {
		r.log.Warn("another sidecar took over the restore job; this one stops", "step", r.doc.Step)
		return
	}
	if err != nil && ctx.Err() != nil && pastPointOfNoReturn(r.doc.Step) {
		r.doc.Owner = ""
		if err := r.save(ctx); err != nil {
			r.log.Error("cannot hand the restore job over", "err", err)
		}
		r.log.Warn("stopped during the restore; the next sidecar that starts or is asked for its status resumes it", "step", r.doc.Step)
		return
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("the sidecar stopped at step %s, before anything was deleted; nothing was changed, start the restore again", r.doc.Step)
	}
	if err != nil && r.doc.WriteBlocked && !pastPointOfNoReturn(r.doc.Step) {
		// Optimize must never start against read-only indices.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*r.s.cfg.ESTimeout)
		defer cancel()
		if lerr := r.s.setWriteBlock(cleanup, r.doc.Plan.Replace, false); lerr != nil {
			err = fmt.Errorf("%w; and lifting the write block failed (%v): lift it with PUT <index>/_settings {\"index.blocks.write\": null}", err, lerr)
		} else {
			r.doc.WriteBlocked = false
		}
	}
	r.doc.EndTime = ptr(r.s.now().UTC())
	if err != nil {
		r.doc.State, r.doc.FailureReason = restoreFailed, ptr(r.failureReason(err))
		r.log.Error("restore failed", "step", r.doc.Step, "err", err)
	} else {
		r.doc.State, r.doc.Step = restoreCompleted, stepDone
		r.log.Info("restore completed")
	}
	if err := r.save(ctx); err != nil {
		r.log.Error("cannot record the end of the restore job", "err", err)
	}
}

// failureReason says what failed and, past the point of no return, where the data is.
func (r *jobRun) failureReason(err error) string {
	if pastPointOfNoReturn(r.doc.Step) && r.doc.SafetyBackupID != nil {
		return fmt.Sprintf("%v. The replaced indices are in safety backup [%s]: restore it with POST .../%s/restore {\"replaceExisting\": true}.", err, *r.doc.SafetyBackupID, *r.doc.SafetyBackupID)
	}
	return err.Error()
}

// steps carries out the plan from the job's current step on.
func (r *jobRun) steps(ctx context.Context) error {
	plan := r.doc.Plan
	if !pastPointOfNoReturn(r.doc.Step) && len(plan.Replace) > 0 {
		if err := r.safetyBackup(ctx); err != nil {
			return err
		}
		if err := r.confirm(ctx); err != nil {
			return err
		}
		if err := r.step(ctx, stepDelete); err != nil {
			return err
		}
	}
	if r.doc.Step == stepDelete {
		if err := r.s.deleteIndices(ctx, plan.Replace); err != nil {
			return err
		}
	}
	for i := range plan.Parts {
		if partDone(r.doc.Step, i+1) {
			continue
		}
		if r.doc.Step != restorePartStep(i+1) {
			if err := r.step(ctx, restorePartStep(i+1)); err != nil {
				return err
			}
		}
		if err := r.restorePart(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// safetyBackup puts a write block on the indices to replace (so nothing written after the
// snapshot began can be lost) and takes a backup of exactly them, part 1 with the import
// indices, then part 2 with the rest; a part with no index is left out, so a half-restored
// installation can be replaced too. It returns once every part is SUCCESS.
func (r *jobRun) safetyBackup(ctx context.Context) error {
	s := r.s
	id := "safety-" + strings.ToLower(s.now().UTC().Format("20060102t150405.000z"))
	id = strings.ReplaceAll(id, ".", "")
	r.doc.SafetyBackupID = &id
	// Recorded before the block is set: whoever finds this job lifts it, whatever happens next.
	r.doc.WriteBlocked = true
	if err := r.step(ctx, stepSafety); err != nil {
		return err
	}
	if err := s.setWriteBlock(ctx, r.doc.Plan.Replace, true); err != nil {
		return fmt.Errorf("safety backup [%s] not started, nothing was deleted: %w", id, err)
	}
	version, err := s.optimizeVersion(ctx)
	if err != nil {
		version = r.doc.Plan.Version // a half-restored installation may have no metadata index
	}
	in := newInstallation(s.cfg.IndexPrefix, nil)
	var imports, rest []string
	for _, ix := range r.doc.Plan.Replace {
		if in.isImport(ix) {
			imports = append(imports, ix)
		} else {
			rest = append(rest, ix)
		}
	}
	for part, indices := range [][]string{imports, rest} {
		if len(indices) == 0 {
			continue
		}
		name := snapshotName(id, version, part+1)
		meta := snapshotMetadata{BackupID: id, Version: version, PartNo: part + 1, PartCount: partCount, CreatedBy: "optimize-backup", Kind: "safety"}
		if err := s.startSnapshot(ctx, name, indices, meta); err != nil {
			return fmt.Errorf("safety backup [%s] did not start, nothing was deleted: %w", id, err)
		}
		snap, err := r.waitSnapshot(ctx, name)
		if err != nil {
			return fmt.Errorf("safety backup [%s] did not complete, nothing was deleted: %w", id, err)
		}
		if missing := slices.DeleteFunc(slices.Clone(indices), func(ix string) bool { return slices.Contains(snap.Indices, ix) }); len(missing) > 0 {
			return fmt.Errorf("safety backup [%s] does not hold %v, nothing was deleted", id, missing)
		}
	}
	return nil
}

// waitSnapshot waits until the snapshot has ended, within the restore wait deadline, and
// returns it if it is SUCCESS.
func (r *jobRun) waitSnapshot(ctx context.Context, name string) (snapshot, error) {
	deadline := time.Now().Add(r.s.cfg.RestoreWaitTimeout)
	for {
		snap, found, err := r.s.snapshotByName(ctx, name)
		switch {
		case err != nil:
			return snapshot{}, err
		case !found:
			return snapshot{}, fmt.Errorf("snapshot %s disappeared (deleted?)", name)
		case snap.State == "SUCCESS":
			return snap, nil
		case snap.State != "IN_PROGRESS":
			return snapshot{}, errors.New(failureOf(snap))
		case time.Now().After(deadline):
			return snapshot{}, fmt.Errorf("snapshot %s still IN_PROGRESS after %v (OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT)", name, r.s.cfg.RestoreWaitTimeout)
		}
		if err := r.heartbeat(ctx); err != nil {
			return snapshot{}, err
		}
		if err := sleepCtx(ctx, r.s.cfg.PollInterval); err != nil {
			return snapshot{}, err
		}
	}
}

// confirm reads the backup again right before the first delete: it must still be COMPLETED,
// with exactly the snapshots the plan was made of.
func (r *jobRun) confirm(ctx context.Context) error {
	if err := r.step(ctx, stepConfirm); err != nil {
		return err
	}
	snaps, err := r.s.backupSnapshots(ctx, r.doc.BackupID)
	if err != nil {
		return fmt.Errorf("cannot re-read backup [%s] before deleting, nothing was deleted: %w", r.doc.BackupID, err)
	}
	info := backupState(r.doc.BackupID, snaps, false, r.s.now(), 0)
	var names, planned []string
	for _, sn := range snaps {
		names = append(names, sn.Name)
	}
	for _, p := range r.doc.Plan.Parts {
		planned = append(planned, p.Snapshot)
	}
	slices.Sort(names)
	slices.Sort(planned)
	if info.State != stateCompleted || !slices.Equal(names, planned) {
		return fmt.Errorf("backup [%s] changed since it was checked (now %s with snapshots %v, checked %v), nothing was deleted", r.doc.BackupID, info.State, names, planned)
	}
	return nil
}

// restorePart restores the indices of part i that do not exist yet (all of them, unless the
// job is resumed) and follows the snapshot's recovery until every shard is done, within the
// restore wait deadline.
func (r *jobRun) restorePart(ctx context.Context, i int) error {
	s, part := r.s, r.doc.Plan.Parts[i]
	existing, err := s.existingIndices(ctx, part.Indices)
	if err != nil {
		return err
	}
	missing := slices.DeleteFunc(slices.Clone(part.Indices), func(ix string) bool { return slices.Contains(existing, ix) })
	if len(missing) > 0 {
		if err := s.restoreSnapshot(ctx, part.Snapshot, missing); err != nil {
			if !answerLost(err) {
				return err
			}
			// The answer got lost: the restore went through if its indices exist now.
			if now, rerr := s.existingIndices(ctx, missing); rerr != nil || len(now) < len(missing) {
				return err
			}
		}
	}
	deadline := time.Now().Add(s.cfg.RestoreWaitTimeout)
	for {
		rec, err := s.recovery(ctx, part.Indices)
		if err != nil {
			return err
		}
		p := restoreProgressOf(part, rec)
		changed := p != r.doc.Snapshots[i]
		r.doc.Snapshots[i] = p
		if p.State == restoreCompleted {
			return r.save(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restore of snapshot %s not done after %v (OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT): %d of %d shards; see GET _cluster/allocation/explain",
				part.Snapshot, s.cfg.RestoreWaitTimeout, p.ShardsDone, p.ShardsTotal)
		}
		if changed {
			err = r.save(ctx)
		} else {
			err = r.heartbeat(ctx)
		}
		if err != nil {
			return err
		}
		if err := sleepCtx(ctx, s.cfg.PollInterval); err != nil {
			return err
		}
	}
}

// restoreProgressOf is how far the restore of one snapshot is, from the recovery of its
// indices: primaries recovered from exactly this snapshot whose recovery is DONE, out of the
// snapshot's shards, and their bytes. It is a pure function of its inputs.
func restoreProgressOf(part planPart, rec recoveryShards) restoreProgress {
	p := restoreProgress{SnapshotName: part.Snapshot, State: restoreRunning, ShardsTotal: part.Shards}
	for _, ix := range part.Indices {
		for _, sh := range rec[ix].Shards {
			if sh.Type != "SNAPSHOT" || !sh.Primary || sh.Source.Snapshot != part.Snapshot {
				continue
			}
			p.BytesTotal += sh.Index.Size.Total
			p.BytesRecovered += sh.Index.Size.Recovered
			if sh.Stage == "DONE" {
				p.ShardsDone++
			}
		}
	}
	if p.ShardsTotal > 0 && p.ShardsDone >= p.ShardsTotal {
		p.State = restoreCompleted
	}
	return p
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
