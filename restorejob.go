package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The restore job: one forward pass over the plan the checks fixed.
//
//	safety-backup   write block on the indices to replace, then a safety backup of exactly
//	                them, waited for until every part is SUCCESS
//	confirm         the backup is read again: still COMPLETED, the same snapshots (by UUID)
//	delete-indices  exactly the planned indices, each still the index that was checked (UUID)
//	restore-part-N  each snapshot's indices (and aliases), followed through _recovery
//
// Until delete-indices nothing is lost by stopping: the job then FAILs and lifts its write
// block. From delete-indices on, transient errors are retried until the wait deadline, and a
// stopped job is resumed by another sidecar (see watchRestoreJobs).

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

// pastPointOfNoReturn tells whether a job at this step may have deleted or restored indices.
func pastPointOfNoReturn(step string) bool {
	return step == stepDelete || strings.HasPrefix(step, "restore-part-")
}

// jobRun is a restore job this process runs, on its leased document.
type jobRun struct {
	*leasedJob[jobDoc, *jobDoc]
}

// newJobRun holds the restore job doc, stored at version ver (zero: not stored yet).
func (s *server) newJobRun(doc jobDoc, ver jobVersion) *jobRun {
	return &jobRun{newLeasedJob[jobDoc](s, s.jobDocID(), doc, ver, doc.BackupID)}
}

// step moves the job to a step; the step acts only after this returned nil.
func (r *jobRun) step(ctx context.Context, name string) error {
	return r.update(ctx, func(d *jobDoc) {
		d.State, d.Step, d.WaitingFor, d.WaitingSince, d.ProgressAt = restoreRunning, name, nil, nil, r.s.now().UnixMilli()
	})
}

// waiting records what the job waits for, and since when, for GET .../restore; waiting again
// for the same (a retry after a passing fault) keeps the time it began.
func (r *jobRun) waiting(ctx context.Context, what string) error {
	if was := r.current().WaitingFor; was != nil && *was == what {
		return nil
	}
	return r.update(ctx, func(d *jobDoc) { d.WaitingFor, d.WaitingSince = &what, ptr(r.s.now().UTC()) })
}

// busyRestore is the 409 of a restore that cannot start now.
func busyRestore(msg string) error {
	return restoreRefused([]restoreCheck{{Name: "nothingRunning", Message: msg}})
}

// startRestore takes the installation's restore job with the plan, and runs it in the background.
func (s *server) startRestore(ctx context.Context, id string, plan restorePlan, stored storedJob) (restoreJob, error) {
	if !s.restores.claim(restoreKey) {
		return restoreJob{}, busyRestore("Another restore is running in this sidecar, or it is stopping; wait until it has finished.")
	}
	started := false
	defer func() {
		if !started {
			s.restores.release(restoreKey)
		}
	}()
	if old := stored.doc; stored.found && old.active() {
		return restoreJob{}, busyRestore(fmt.Sprintf("The restore of backup [%s] is %s (step %s); wait until it has finished (if its sidecar stopped, a running sidecar takes it over within a minute).", old.BackupID, old.State, old.Step))
	}
	doc := jobDoc{Repository: s.cfg.Repository, Plan: plan, ProgressAt: s.now().UnixMilli(),
		restoreJob: restoreJob{BackupID: id, State: restorePending, Step: stepStarting, StartTime: ptr(s.now().UTC())}}
	for _, p := range plan.Parts {
		doc.Snapshots = append(doc.Snapshots, restoreProgress{SnapshotName: p.Snapshot, State: restorePending, ShardsTotal: p.Shards})
	}
	run := s.newJobRun(doc, stored.ver)
	if err := run.start(ctx); errors.Is(err, errLeaseTaken) {
		return restoreJob{}, busyRestore("Another sidecar started a restore, or a backup was being deleted, while this one was checked; nothing was changed: send the restore again.")
	} else if err != nil {
		return restoreJob{}, err
	}
	// A DELETE or a drill that began before the job was taken wins: the job ends FAILED, having
	// done nothing.
	if err := s.nothingElseStarted(ctx, id); err != nil {
		run.finish(ctx, fmt.Errorf("%w; nothing was changed", err), false)
		return restoreJob{}, busyRestore(fmt.Sprintf("Cannot start now: %v; send the restore again once that has ended.", err))
	}
	started = true
	run.log.Info("restore started", "replace", len(plan.Replace))
	job := run.current().restoreJob
	if !s.restores.start(restoreKey, func(ctx context.Context) { run.run(ctx, false) }) {
		// The process began stopping in between: nothing was done, say so.
		run.finish(context.Background(), errors.New("the sidecar is stopping; nothing was changed, start the restore again"), false)
		return restoreJob{}, busyRestore("The sidecar is stopping; start the restore again on a running one.")
	}
	return job, nil
}

// nothingElseStarted fails if a drill runs or a DELETE marked the backup. A restore reads them
// after taking its job, a drill or a DELETE reads the job after taking its own document: with
// Elasticsearch's realtime reads, of two starting together one always sees the other.
func (s *server) nothingElseStarted(ctx context.Context, id string) error {
	var drill drillDoc
	_, drillFound, err := s.loadDoc(ctx, s.drillDocID(), &drill)
	if err != nil {
		return err
	}
	if drillFound && drill.State == drillRunning {
		return fmt.Errorf("the drill of backup [%s] is running", drill.BackupID)
	}
	marks, _, err := s.loadMarks(ctx)
	if err != nil {
		return err
	}
	if s.markedForDelete(marks, id) {
		return fmt.Errorf("backup [%s] is being deleted", id)
	}
	return nil
}

// takeOverRestore makes this sidecar the owner of the job stored at version ver and runs it.
func (s *server) takeOverRestore(ctx context.Context, doc jobDoc, ver jobVersion) error {
	if doc.Repository != s.cfg.Repository {
		return fmt.Errorf("the restore job of backup [%s] uses repository [%s], this sidecar [%s]; a sidecar with CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME=%s resumes it", doc.BackupID, doc.Repository, s.cfg.Repository, doc.Repository)
	}
	if !s.restores.claim(restoreKey) {
		return nil // this process runs it, or is stopping
	}
	run := s.newJobRun(doc, ver)
	if err := run.takeOver(ctx, func(*jobDoc) {}); err != nil {
		s.restores.release(restoreKey)
		return err
	}
	run.log.Warn("taking over the restore job", "previous_owner", doc.Owner, "step", doc.Step)
	s.restores.start(restoreKey, func(ctx context.Context) { run.run(ctx, true) }) // if stopping: the next sidecar takes it over
	return nil
}

// watchRestoreJobs takes over an active restore job whose sidecar let go of it or went silent.
func (s *server) watchRestoreJobs(ctx context.Context) {
	watchLeased[jobDoc](ctx, s, s.jobDocID(), jobDoc.active, func() bool { return s.restores.has(restoreKey) }, s.takeOverRestore)
}

// handleEndRestore ends the running restore job of a backup (admin only): the operator's way
// out of a job that cannot finish. ?force=true ends one that still makes progress.
func (s *server) handleEndRestore(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	force, err := strconv.ParseBool(cmp.Or(r.URL.Query().Get("force"), "false"))
	if err != nil {
		s.writeError(w, r, badRequest("?force=%q is not true or false.", r.URL.Query().Get("force")))
		return
	}
	if err := s.checkStatusRequest(id); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Ending must not depend on the caller staying: the write block is lifted either way.
	job, err := s.endRestore(context.WithoutCancel(r.Context()), id, force)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, job)
}

// progressingWithin: DELETE .../restore ends a job that progressed (a step, a shard, bytes) this
// recently only with ?force=true. It compares two sidecars' clocks: a skew of seconds is fine.
const progressingWithin = 2 * time.Minute

// endRestore ends the active restore job of the backup at an operator's request: FAILED, its
// write block lifted, nothing more deleted or restored; its owner finds the job taken at its
// next write and stops. A job that progressed within progressingWithin is refused unless force.
func (s *server) endRestore(ctx context.Context, id string, force bool) (restoreJob, error) {
	// A live owner writes its job often (heartbeat, progress): read and take it again when it
	// wrote in between, a few times, rather than send the operator back.
	for attempt := 1; ; attempt++ {
		run, doc, err := s.takeEndedJob(ctx, id, force)
		if errors.Is(err, errLeaseTaken) && attempt < 5 {
			continue
		} else if errors.Is(err, errLeaseTaken) {
			return restoreJob{}, conflict("The restore of backup [%s] changed while it was being ended, %d times; send the DELETE again.", id, attempt)
		} else if err != nil {
			return restoreJob{}, err
		}
		s.log.Warn("restore ended by an operator", "backup_id", id, "step", doc.Step, "previous_owner", doc.Owner)
		if !doc.WriteBlocked {
			return run.current().restoreJob, nil
		}
		if err := s.setWriteBlock(ctx, liftable(doc.Plan), false, run.guard); err != nil {
			return run.current().restoreJob, fmt.Errorf("the restore of backup [%s] was ended, but lifting its write block failed: %w; lift it with PUT <index>/_settings {\"index.blocks.write\": null}", id, err)
		}
		if err := run.update(ctx, func(d *jobDoc) { d.WriteBlocked = false }); err != nil {
			return run.current().restoreJob, err
		}
		s.liftAgainLater(run.current())
		return run.current().restoreJob, nil
	}
}

// takeEndedJob reads the active restore job of the backup and stores it FAILED, ended by an
// operator (compare-and-set: errLeaseTaken if it changed since it was read).
func (s *server) takeEndedJob(ctx context.Context, id string, force bool) (*jobRun, jobDoc, error) {
	stored, err := s.loadJob(ctx)
	doc := stored.doc
	switch {
	case err != nil:
		return nil, doc, err
	case !stored.found || doc.BackupID != id:
		return nil, doc, notFound("No restore of backup [%s] is running or recorded in Elasticsearch; there is nothing to end.", id)
	case !doc.active():
		return nil, doc, conflict("The restore of backup [%s] has already ended (%s); there is nothing to end.", id, doc.State)
	}
	if ago := s.now().Sub(time.UnixMilli(doc.ProgressAt)); !force && ago < progressingWithin {
		return nil, doc, conflict("The restore of backup [%s] is making progress (step %s, last progress %v ago); wait for it, or end it anyway with DELETE .../%s/restore?force=true.", id, doc.Step, ago.Round(time.Second), id)
	}
	run := s.newJobRun(doc, stored.ver)
	reason := run.failureReason(doc, fmt.Errorf("ended by an operator (DELETE .../restore) at step %s; nothing more is deleted or restored", doc.Step))
	err = run.takeOver(ctx, func(d *jobDoc) {
		d.State, d.FailureReason, d.EndTime = restoreFailed, &reason, ptr(s.now().UTC())
	})
	return run, doc, err
}

// liftAgainLater lifts the write block of a job ended by an operator once more, when every
// request of its former owner has ended (its master_timeout): a block the owner was setting at
// the very moment of the end may land after the first lift. It lifts nothing if the stored job
// is no longer that one (a new restore blocks the same indices for its own safety backup), and
// at once if the sidecar stops before.
func (s *server) liftAgainLater(ended jobDoc) {
	key := "lift-again-" + ended.Rev // per ended job: the same backup may be restored and ended again
	if !s.restores.claim(key) {
		return // one is already waiting, or the sidecar is stopping
	}
	s.restores.start(key, func(ctx context.Context) {
		_ = sleepCtx(ctx, s.cfg.ESTimeout+time.Second)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.cfg.ESTimeout)
		defer cancel()
		stored, err := s.loadJob(ctx)
		if err == nil && (!stored.found || stored.doc.active() || stored.doc.Rev != ended.Rev) {
			return // another job since: its block is its own
		}
		if err == nil {
			err = s.setWriteBlock(ctx, liftable(ended.Plan), false, func() error { return nil })
		}
		if err != nil {
			s.log.Error("cannot lift the write block of an ended restore again; lift it with PUT <index>/_settings {\"index.blocks.write\": null}", "backup_id", ended.BackupID, "err", err)
		}
	})
}

// run carries out the job while its lease is renewed, lifts its write block if it failed before
// its point of no return, and records how it ended. A job resumed (taken over) before that
// point fails instead: nothing was deleted yet, and its checks may no longer hold.
func (r *jobRun) run(ctx context.Context, resumed bool) {
	lifted := false
	ctx, err := r.leasedJob.run(ctx, func(ctx context.Context) error {
		var err error
		if step := r.current().Step; resumed && !pastPointOfNoReturn(step) {
			err = fmt.Errorf("the sidecar running this restore stopped at step %s, before anything was deleted; nothing was changed, start the restore again", step)
		} else {
			err = r.steps(ctx)
		}
		lifted, err = r.liftBlock(ctx, err)
		return err
	})
	r.finish(ctx, err, lifted)
}

// liftBlock lifts the write block of a job that failed or stopped before its point of no
// return (Optimize must never start against read-only indices), while its lease still runs.
func (r *jobRun) liftBlock(ctx context.Context, err error) (bool, error) {
	doc := r.current()
	if err == nil || !doc.WriteBlocked || pastPointOfNoReturn(doc.Step) || lost(ctx, err) {
		return false, err
	}
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*r.s.cfg.ESTimeout)
	defer cancel()
	if errors.Is(err, errLeaseExpired) {
		// Renew first: if another sidecar took the job meanwhile, it lifts the block.
		if rerr := r.update(cleanup, func(*jobDoc) {}); rerr != nil {
			return false, err
		}
	}
	if lerr := r.s.setWriteBlock(cleanup, liftable(doc.Plan), false, r.confirmed(cleanup)); lerr != nil {
		return false, fmt.Errorf("%w; and lifting the write block failed (%v): lift it with PUT <index>/_settings {\"index.blocks.write\": null}", err, lerr)
	}
	return true, err
}

// finish records how the job ended. One stopped past the point of no return (by shutdown or an
// expired lease) is handed over instead (owner cleared), for a sidecar to resume at once.
func (r *jobRun) finish(ctx context.Context, err error, lifted bool) {
	if lost(ctx, err) {
		// Another sidecar owns the job now: it records the end, not this one.
		r.log.Warn("this sidecar stops acting on the restore job; another takes it over", "step", r.current().Step, "err", err)
		return
	}
	doc := r.current() // the stored job: its step is the last one that was persisted
	if err != nil && (ctx.Err() != nil || errors.Is(err, errLeaseExpired)) && pastPointOfNoReturn(doc.Step) {
		if err := r.update(ctx, func(d *jobDoc) { d.Owner = "" }); err != nil {
			r.log.Error("cannot hand the restore job over", "err", err)
		}
		r.log.Warn("stopped during the restore; a running sidecar resumes it", "step", doc.Step, "err", err)
		return
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("the sidecar stopped at step %s, before anything was deleted; nothing was changed, start the restore again", doc.Step)
	}
	end := ptr(r.s.now().UTC())
	if err != nil {
		reason := r.failureReason(doc, err)
		r.log.Error("restore failed", "step", doc.Step, "err", err)
		err = r.update(ctx, func(d *jobDoc) {
			d.State, d.FailureReason, d.EndTime = restoreFailed, &reason, end
			d.WriteBlocked = d.WriteBlocked && !lifted
		})
	} else {
		r.log.Info("restore completed")
		err = r.update(ctx, func(d *jobDoc) { d.State, d.Step, d.EndTime = restoreCompleted, stepDone, end })
	}
	if err != nil {
		r.log.Error("cannot record the end of the restore job", "err", err)
	}
}

// liftable are the indices whose write block this job set: not those blocked before it.
func liftable(plan restorePlan) []string {
	return slices.DeleteFunc(slices.Clone(plan.Replace), func(ix string) bool { return slices.Contains(plan.PreBlocked, ix) })
}

// failureReason says what failed and, past the point of no return, where the data is.
func (r *jobRun) failureReason(doc jobDoc, err error) string {
	if !pastPointOfNoReturn(doc.Step) {
		return err.Error()
	}
	if doc.SafetyBackupID == nil {
		return fmt.Sprintf("%v. No index of the installation existed before this restore: once the cause is fixed, restore the backup again with POST .../%s/restore {\"replaceExisting\": true}.", err, doc.BackupID)
	}
	return fmt.Sprintf("%v. The replaced indices are in safety backup [%s] (snapshots camunda_optimize_%s_*): restore it with POST .../%s/restore {\"replaceExisting\": true}, or, if it has one part only, with Elasticsearch's restore API.",
		err, *doc.SafetyBackupID, *doc.SafetyBackupID, *doc.SafetyBackupID)
}

// steps carries out the plan from the job's stored step on.
func (r *jobRun) steps(ctx context.Context) error {
	plan := r.current().Plan
	if !pastPointOfNoReturn(r.current().Step) && len(plan.Replace) > 0 {
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
	if r.current().Step == stepDelete {
		if err := r.s.retrying(ctx, r.log, "delete the replaced indices", func() error { return r.deleteReplaced(ctx) }); err != nil {
			return err
		}
	}
	var at int // the part a resumed job was restoring; 0 when its step is not a part's
	fmt.Sscanf(r.current().Step, "restore-part-%d", &at)
	for i := max(at, 1) - 1; i < len(plan.Parts); i++ {
		if step := restorePartStep(i + 1); r.current().Step != step {
			if err := r.s.retrying(ctx, r.log, "record step "+step, func() error { return r.step(ctx, step) }); err != nil {
				return err
			}
		}
		if err := r.restorePartRepairing(ctx, i); err != nil {
			return err
		}
	}
	return r.s.retrying(ctx, r.log, "check the installation after the restore", func() error { return r.checkNothingElse(ctx) })
}

// retrying runs act until it succeeds, fails for good (not transient), or
// OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT passes, waiting longer after each passing fault.
func (s *server) retrying(ctx context.Context, log *slog.Logger, what string, act func() error) error {
	deadline := time.Now().Add(s.cfg.RestoreWaitTimeout)
	wait := s.cfg.PollInterval
	for {
		err := act()
		if err == nil || !transient(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		log.Warn("failed for now; will retry", "what", what, "err", err, "in", wait.String())
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// transient tells whether an error may pass by itself: no answer, a 429, transientTypes, errNotYet.
func transient(err error) bool {
	var ee *esError
	return errors.Is(err, errNotYet) || answerLost(err) ||
		errors.As(err, &ee) && (ee.Status == http.StatusTooManyRequests || slices.Contains(transientTypes, ee.Type))
}

// transientTypes are Elasticsearch errors that pass by themselves (a busy or re-electing
// cluster, indices held by a snapshot for a while); any other 500 is permanent. OpenSearch
// names a cluster without an elected manager cluster_manager_not_discovered_exception.
var transientTypes = []string{"es_rejected_execution_exception", "process_cluster_event_timeout_exception",
	"master_not_discovered_exception", "cluster_manager_not_discovered_exception", "unavailable_shards_exception", "node_not_connected_exception",
	"node_disconnected_exception", "circuit_breaking_exception", "snapshot_in_progress_exception",
	"concurrent_snapshot_execution_exception", "no_shard_available_action_exception"}

// safetyBackup puts a write block on the indices to replace (so nothing written after the
// snapshot began can be lost) and backs up exactly them, until SUCCESS: part 1 the import
// indices, part 2 the rest, a part with no index left out (a half-restored installation).
func (r *jobRun) safetyBackup(ctx context.Context) error {
	s := r.s
	id := strings.ReplaceAll("safety-"+strings.ToLower(s.now().UTC().Format("20060102t150405.000z")), ".", "")
	// Recorded before the block is set: whoever finds this job lifts it, whatever happens next.
	if err := r.update(ctx, func(d *jobDoc) {
		d.State, d.Step, d.SafetyBackupID, d.WriteBlocked, d.ProgressAt = restoreRunning, stepSafety, &id, true, s.now().UnixMilli()
	}); err != nil {
		return err
	}
	plan := r.current().Plan
	err := s.checkUUIDs(ctx, plan, false)
	if err == nil {
		err = s.setWriteBlock(ctx, liftable(plan), true, r.confirmed(ctx))
	}
	if err != nil {
		return fmt.Errorf("safety backup [%s] not started, nothing was deleted: %w", id, err)
	}
	version, err := s.optimizeVersion(ctx)
	if err != nil {
		version = plan.Version // a half-restored installation may have no metadata index
	}
	in := newInstallation(s.cfg.IndexPrefix, nil)
	imports := slices.DeleteFunc(slices.Clone(plan.Replace), func(ix string) bool { return !in.isImport(ix) })
	rest := slices.DeleteFunc(slices.Clone(plan.Replace), in.isImport)
	for part, indices := range [][]string{imports, rest} {
		if len(indices) == 0 {
			continue
		}
		name := snapshotName(id, version, part+1)
		meta := snapshotMetadata{BackupID: id, Version: version, PartNo: part + 1, PartCount: partCount, CreatedBy: "optimize-backup", Kind: "safety", IndexPrefix: s.cfg.IndexPrefix}
		if err := r.confirmed(ctx)(); err != nil {
			return err
		}
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

// waitSnapshot waits until the snapshot has ended and returns it if it is SUCCESS.
func (r *jobRun) waitSnapshot(ctx context.Context, name string) (snap snapshot, err error) {
	if err := r.waiting(ctx, "snapshot "+name+" to complete"); err != nil {
		return snapshot{}, err
	}
	shards := -1
	err = r.s.waitUntil(ctx, r.log, newStallWatch("snapshot "+name, 0), func() (bool, string, error) {
		var found bool
		snap, found, err = r.s.snapshotByName(ctx, name)
		if err == nil && found && snap.Shards.Successful != shards {
			// A shard done is progress: DELETE .../restore refuses to end a job that progresses.
			shards = snap.Shards.Successful
			err = r.update(ctx, func(d *jobDoc) { d.ProgressAt = r.s.now().UnixMilli() })
		}
		switch {
		case err != nil:
			return false, "", err
		case !found:
			return false, "", fmt.Errorf("snapshot %s disappeared (deleted?)", name)
		case snap.State != "IN_PROGRESS" && snap.State != "SUCCESS":
			return false, "", errors.New(failureOf(snap))
		}
		return snap.State == "SUCCESS", fmt.Sprintf("%d of %d shards", snap.Shards.Successful, snap.Shards.Total), nil
	})
	return snap, err
}

// confirm reads the backup again right before the first delete: still COMPLETED, with exactly
// the planned snapshots (by UUID: not deleted and taken again under the same ID).
func (r *jobRun) confirm(ctx context.Context) error {
	if err := r.step(ctx, stepConfirm); err != nil {
		return err
	}
	doc := r.current()
	snaps, err := r.s.backupSnapshots(ctx, doc.BackupID)
	if err != nil {
		return fmt.Errorf("cannot re-read backup [%s] before deleting, nothing was deleted: %w", doc.BackupID, err)
	}
	info := backupState(doc.BackupID, snaps, false, r.s.now(), 0)
	var now, planned []string
	for _, sn := range snaps {
		now = append(now, sn.Name+"/"+sn.UUID)
	}
	for _, p := range doc.Plan.Parts {
		planned = append(planned, p.Snapshot+"/"+p.UUID)
	}
	slices.Sort(now)
	slices.Sort(planned)
	if info.State != stateCompleted || !slices.Equal(now, planned) {
		return fmt.Errorf("backup [%s] changed since it was checked (now %s with snapshots %v, checked %v), nothing was deleted", doc.BackupID, info.State, now, planned)
	}
	// Every index to replace is still the one the safety backup holds.
	return r.s.checkUUIDs(ctx, doc.Plan, false)
}

// deleteReplaced deletes the planned indices still there, once each is found to be the one
// backed up (same UUID): one created again since (by Optimize, say) is in no snapshot.
func (r *jobRun) deleteReplaced(ctx context.Context) error {
	plan := r.current().Plan
	if err := r.s.checkUUIDs(ctx, plan, true); err != nil {
		return err
	}
	return r.s.deleteIndices(ctx, plan.Replace, r.confirmed(ctx))
}

// restorePart restores the indices of part i that do not exist yet and follows their recovery,
// watched by watch.
func (r *jobRun) restorePart(ctx context.Context, i int, watch *stallWatch) error {
	part := r.current().Plan.Parts[i]
	existing, err := r.s.existingIndices(ctx, part.Indices)
	if err != nil {
		return err
	}
	if err := r.checkExisting(ctx, part, existing); err != nil {
		return err
	}
	missing := slices.DeleteFunc(slices.Clone(part.Indices), func(ix string) bool { return slices.Contains(existing, ix) })
	if err := r.restoreMissing(ctx, part, missing); err != nil {
		return err
	}
	if err := r.waiting(ctx, "the recovery of the indices restored from snapshot "+part.Snapshot); err != nil {
		return err
	}
	var written time.Time // when the progress was last stored
	return r.s.followRecovery(ctx, r.log, part, r.current().Restored, watch, func(p restoreProgress) error {
		// Progress is stored when a shard or the state changes, and bytes at most every
		// progressEvery: the recovery is read far more often while a part is young.
		was := r.current().Snapshots[i]
		if p == was || p.ShardsDone == was.ShardsDone && p.State == was.State && time.Since(written) < progressEvery {
			return nil
		}
		written = time.Now()
		return r.update(ctx, func(d *jobDoc) { d.Snapshots[i], d.ProgressAt = p, r.s.now().UnixMilli() })
	})
}

// restorePartRepairing restores part i. An index of it that Elasticsearch cannot recover (a
// node crashed mid-restore, cutting its shard's files off) was created by this job: it is deleted
// and restored again, up to OPTIMIZE_BACKUP_RESTORE_REPAIRS times; then the job fails, deleting
// them all the same (they hold nothing of value; a red index would fail the next safety backup).
func (r *jobRun) restorePartRepairing(ctx context.Context, i int) error {
	snapshot := r.current().Plan.Parts[i].Snapshot
	for {
		// One watch for every retry: a passing fault does not restart the stall timeout. A
		// repair starts a new one (deleting and restoring again is progress).
		watch := newStallWatch("the restore of snapshot "+snapshot, r.s.cfg.RestoreStallTimeout)
		err := r.s.retrying(ctx, r.log, "restore "+snapshot, func() error {
			if err := watch.stalled(time.Now()); err != nil {
				return err
			}
			return r.restorePart(ctx, i, watch)
		})
		var failure *shardFailure
		if !errors.As(err, &failure) {
			return err
		}
		repairs := r.current().Repairs
		done := 0
		for _, f := range failure.failed {
			done = max(done, repairs[f.Index])
		}
		doomed, givingUp := failure.failed, done >= r.s.cfg.RestoreRepairs
		if givingUp {
			doomed = r.withUnassigned(ctx, r.current().Plan.Parts[i], doomed)
		}
		r.log.Warn("indices this restore created cannot recover; deleting them", "err", err, "repairs_done", done, "deleting", len(doomed))
		if err := r.s.retrying(ctx, r.log, "delete the failed indices", func() error { return r.discard(ctx, doomed) }); err != nil {
			return err
		}
		if givingUp {
			return fmt.Errorf("the restore of snapshot %s failed: %w; the failed indices were deleted, with the part's indices not started yet (%d in all; restored again %d times before, OPTIMIZE_BACKUP_RESTORE_REPAIRS=%d): check the nodes' disks and Elasticsearch's log", snapshot, err, len(doomed), done, r.s.cfg.RestoreRepairs)
		}
		if err := r.update(ctx, func(d *jobDoc) {
			if d.Repairs == nil {
				d.Repairs = map[string]int{}
			}
			for _, f := range failure.failed {
				d.Repairs[f.Index]++
			}
		}); err != nil {
			return err
		}
	}
}

// withUnassigned adds to failed the indices of the part this job restored (same UUID) with a
// primary not started yet (unassigned, or still recovering: after a crash Elasticsearch may be
// retrying one that will fail again): when the job gives up they hold nothing of value either,
// and a red index would fail the next restore's safety backup (Elasticsearch refuses to snapshot
// an index with unassigned primaries). If the cluster state cannot be read, failed alone.
func (r *jobRun) withUnassigned(ctx context.Context, part planPart, failed []failedIndex) []failedIndex {
	health, err := r.s.indicesHealth(ctx, part.Indices)
	if err != nil {
		r.log.Warn("cannot read which indices of the part are still unassigned; deleting only the failed ones", "err", err)
		return failed
	}
	restored := r.current().Restored
	for _, ix := range part.Indices {
		h, exists := health[ix]
		listed := slices.ContainsFunc(failed, func(f failedIndex) bool { return f.Index == ix })
		if exists && !listed && restored[ix] != "" && h.UUID == restored[ix] && len(h.Unassigned)+h.Initializing > 0 {
			failed = append(failed, failedIndex{Index: ix, UUID: h.UUID, Reason: "not started when the restore gave up"})
		}
	}
	return failed
}

// discard deletes indices this job restored that cannot recover, each if it is still that
// index (same UUID), and forgets them: the next restorePart restores them again.
func (r *jobRun) discard(ctx context.Context, failed []failedIndex) error {
	var names, doomed []string
	for _, f := range failed {
		names = append(names, f.Index)
	}
	facts, err := r.s.indexSettings(ctx, names)
	if err != nil {
		return err
	}
	for _, f := range failed {
		if f.UUID != "" && facts[f.Index].UUID == f.UUID {
			doomed = append(doomed, f.Index)
		}
	}
	if err := r.s.deleteIndices(ctx, doomed, r.confirmed(ctx)); err != nil {
		return err
	}
	return r.update(ctx, func(d *jobDoc) {
		for _, ix := range names {
			delete(d.Restored, ix)
		}
	})
}

// checkExisting fails unless every existing index of the part is this job's: recorded by UUID,
// or created by one of its restore requests (asked for in Restoring, or recovering from the
// part's snapshot) whose record was lost with a stopped sidecar or a lost answer; such an index
// is recorded once its creation date proves it restored (recordRestored). Anything else
// someone created, and it is left alone.
func (r *jobRun) checkExisting(ctx context.Context, part planPart, existing []string) error {
	if len(existing) == 0 {
		return nil
	}
	facts, err := r.s.indexSettings(ctx, existing)
	if err != nil {
		return err
	}
	doc := r.current()
	var unrecorded []string
	for _, ix := range existing {
		if uuid := doc.Restored[ix]; uuid != "" && facts[ix].UUID != uuid {
			return errForeign(ix, facts[ix].UUID, uuid)
		} else if uuid == "" {
			unrecorded = append(unrecorded, ix)
		}
	}
	if len(unrecorded) == 0 {
		return nil
	}
	rec, err := r.s.recovery(ctx, unrecorded)
	if err != nil {
		return err
	}
	for _, ix := range unrecorded {
		fromPart := slices.ContainsFunc(rec[ix].Shards, func(sh recoveryShard) bool { return sh.Type == "SNAPSHOT" && sh.Source.Snapshot == part.Snapshot })
		if !fromPart && !slices.Contains(doc.Restoring, ix) {
			return fmt.Errorf("index %s exists but was not restored from snapshot %s by this job: something created it (is Optimize running?); it was left as it is", ix, part.Snapshot)
		}
	}
	return r.recordRestored(ctx, part, unrecorded)
}

// restoreMissing restores these indices of the part and records their UUIDs, each once it is
// proven restored from a snapshot (fromSnapshot): a resumed job accepts them by UUID,
// wherever their shards moved since, and only they are ever the job's to repair.
func (r *jobRun) restoreMissing(ctx context.Context, part planPart, missing []string) error {
	if len(missing) == 0 {
		return nil
	}
	// Recorded before the request: an index of these names that shows up without its UUID
	// recorded may have been created by this request (see justRestored).
	if err := r.update(ctx, func(d *jobDoc) { d.Restoring = missing }); err != nil {
		return err
	}
	if err := r.confirmed(ctx)(); err != nil {
		return err
	}
	if err := r.s.restoreSnapshot(ctx, part.Snapshot, missing); err != nil {
		var ee *esError
		if errors.As(err, &ee) && ee.Type == "snapshot_restore_exception" && strings.Contains(ee.Reason, "already exists") {
			// An index appeared since it was looked for: most likely this job's own restore
			// request from before a restart, applied late. The next round checks what it is.
			return fmt.Errorf("%w: %v", errNotYet, err)
		}
		if !answerLost(err) {
			return err
		}
		if err := r.waiting(ctx, "the indices restored from snapshot "+part.Snapshot+" to appear (the restore request's answer was lost)"); err != nil {
			return err
		}
		if ok, aerr := r.s.appeared(ctx, r.log, missing); aerr != nil || !ok {
			return cmp.Or(aerr, err)
		}
	}
	return r.recordRestored(ctx, part, missing)
}

// fromSnapshot tells whether an index of the part's name was restored from its snapshot, not
// created since (by Optimize, by anyone): a restore keeps the creation date the index had, so
// one restored from the snapshot was created before the snapshot began. Both dates are by the
// clock of the cluster that took the snapshot, whatever the sidecar's clock. The job repairs
// (deletes) an index only when this holds: a name alone never proves an index is the job's. A
// plan stored without the snapshot's start compares with the job's start, by the sidecar's clock.
func (r *jobRun) fromSnapshot(part planPart, f indexFacts) bool {
	if part.StartMillis > 0 {
		return f.CreatedMillis > 0 && f.CreatedMillis <= part.StartMillis
	}
	start := r.current().StartTime
	return f.CreatedMillis > 0 && start != nil && f.CreatedMillis < start.UnixMilli()
}

// recordRestored records the UUIDs of those of these indices of the part that were restored
// from a snapshot, and fails for one that was created since: it is no one's to repair.
func (r *jobRun) recordRestored(ctx context.Context, part planPart, indices []string) error {
	facts, err := r.s.indexSettings(ctx, indices)
	if err != nil {
		return err
	}
	var created []string
	for _, ix := range indices {
		if f, exists := facts[ix]; exists && !r.fromSnapshot(part, f) {
			created = append(created, ix)
		}
	}
	if err := r.update(ctx, func(d *jobDoc) {
		if d.Restored == nil {
			d.Restored = map[string]string{}
		}
		for _, ix := range indices {
			if f, exists := facts[ix]; exists && r.fromSnapshot(part, f) {
				d.Restored[ix] = f.UUID
			}
		}
		d.Restoring = slices.DeleteFunc(slices.Clone(d.Restoring), func(ix string) bool { return slices.Contains(indices, ix) })
	}); err != nil {
		return err
	}
	if len(created) > 0 {
		return fmt.Errorf("indices %v exist but were created after snapshot %s began, not restored from it: something created them (is Optimize running?); they were left as they are", created, part.Snapshot)
	}
	return nil
}

// appeared waits for indices whose restore request lost its answer: the master may still apply
// it (all of a request's indices come at once). It gives up one Elasticsearch deadline after
// the first answer without them; while Elasticsearch does not answer (a node restarting), it
// keeps asking, logging every minute, until OPTIMIZE_BACKUP_RESTORE_STALL_TIMEOUT.
func (s *server) appeared(ctx context.Context, log *slog.Logger, indices []string) (found bool, err error) {
	var missingSince time.Time
	watch := newStallWatch("the indices of a restore whose answer was lost ("+strings.Join(indices, ", ")+")", s.cfg.RestoreStallTimeout)
	err = s.waitUntil(ctx, log, watch, func() (bool, string, error) {
		now, err := s.existingIndices(ctx, indices)
		switch {
		case err != nil && transient(err):
			return false, "Elasticsearch does not answer", nil
		case err != nil:
			return false, "", err
		case len(now) == len(indices):
			found = true
			return true, "", nil
		case missingSince.IsZero():
			missingSince = time.Now()
		case time.Since(missingSince) > s.cfg.ESTimeout:
			return true, "", nil
		}
		return false, "not there yet", nil
	})
	return found, err
}

// checkNothingElse fails a restore after which the installation holds indices not from the backup.
func (r *jobRun) checkNothingElse(ctx context.Context) error {
	_, part1, part2, err := r.s.installationIndices(ctx)
	if err != nil {
		return err
	}
	var restored []string
	for _, p := range r.current().Plan.Parts {
		restored = append(restored, p.Indices...)
	}
	extra := slices.DeleteFunc(append(part1, part2...), func(ix string) bool { return slices.Contains(restored, ix) })
	if len(extra) > 0 {
		return fmt.Errorf("the backup was restored, but the installation also holds %v, which are not from the backup: something created them during the restore (is Optimize running?); stop Optimize, check them, and delete them or restore again", extra)
	}
	return nil
}

// progressEvery is how often a restore's byte count is stored in its job while it changes.
const progressEvery = time.Second
