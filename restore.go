package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// Restore follows Optimize's documented runbook as one admin call: every precondition is
// checked before anything changes, then part 1 and part 2 are restored in the background and
// followed through _recovery.

// The states of a restore job.
const (
	restorePending   = "PENDING"
	restoreRunning   = "RUNNING"
	restoreCompleted = "COMPLETED"
	restoreFailed    = "FAILED"
)

// restoreRequest is the optional body of POST .../restore.
type restoreRequest struct {
	// DryRun runs the checks only.
	DryRun bool `json:"dryRun"`
	// ReplaceExisting lets existing Optimize indices be replaced, after a safety backup of
	// them has COMPLETED.
	ReplaceExisting bool `json:"replaceExisting"`
}

// restoreCheck is the outcome of one precondition.
type restoreCheck struct {
	Name    string `json:"name"`
	Passed  bool   `json:"passed"`
	Message string `json:"message"`
}

// restoreJob is what GET .../restore reports.
type restoreJob struct {
	BackupID       string            `json:"backupId"`
	State          string            `json:"state"`
	Step           string            `json:"step"`
	SafetyBackupID *string           `json:"safetyBackupId"`
	Snapshots      []restoreProgress `json:"snapshots"`
	StartTime      *time.Time        `json:"startTime"`
	EndTime        *time.Time        `json:"endTime"`
	FailureReason  *string           `json:"failureReason"`
}

// restoreProgress is the progress of restoring one snapshot, from _recovery.
type restoreProgress struct {
	SnapshotName   string `json:"snapshotName"`
	State          string `json:"state"`
	ShardsDone     int    `json:"shardsDone"`
	ShardsTotal    int    `json:"shardsTotal"`
	BytesRecovered int64  `json:"bytesRecovered"`
	BytesTotal     int64  `json:"bytesTotal"`
}

// restoreConflictError lists every failed precondition.
type restoreConflictError struct{ checks []restoreCheck }

func (e *restoreConflictError) Error() string {
	var failed []string
	for _, c := range e.checks {
		if !c.Passed {
			failed = append(failed, c.Message)
		}
	}
	return "Restore refused, nothing was changed: " + strings.Join(failed, " ")
}

// restores holds the one restore job this process runs or ran last. Only one runs at a time.
type restores struct {
	mu     sync.Mutex
	job    *restoreJob
	cancel context.CancelFunc // stops following the running job
	done   chan struct{}      // closed when the running job's goroutine has returned
}

// shutdown lets a running job go on until ctx ends, then stops following it. Elasticsearch
// goes on restoring; GET .../restore then reports from _recovery.
func (r *restores) shutdown(ctx context.Context) {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
		cancel()
		<-done
	}
}

// running tells whether a restore job is under way.
func (r *restores) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.activeLocked()
}

// activeLocked tells, with mu held, whether the job is pending or running.
func (r *restores) activeLocked() bool {
	return r.job != nil && (r.job.State == restorePending || r.job.State == restoreRunning)
}

// update changes the job under the lock.
func (r *restores) update(change func(*restoreJob)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	change(r.job)
}

// snapshotOf returns a copy of the job of this backup, if it is the one this process knows.
func (r *restores) snapshotOf(id string) (restoreJob, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.job == nil || r.job.BackupID != id {
		return restoreJob{}, false
	}
	job := *r.job
	job.Snapshots = slices.Clone(r.job.Snapshots)
	return job, true
}

// handleRestore checks the preconditions of restoring a backup and, unless it is a dry run,
// starts the restore job (admin only).
func (s *server) handleRestore(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req restoreRequest
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	info, err := s.backup(r, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	checks, existing, err := s.restoreChecks(r.Context(), info, req.ReplaceExisting)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	passed := !slices.ContainsFunc(checks, func(c restoreCheck) bool { return !c.Passed })
	if req.DryRun {
		writeJSON(w, http.StatusOK, map[string]any{"backupId": info.wire(isLegacyRoute(r)).BackupID, "dryRun": true, "wouldRestore": passed, "checks": checks})
		return
	}
	if !passed {
		s.writeError(w, r, &restoreConflictError{checks: checks})
		return
	}
	job, err := s.startRestore(info, existing)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, job)
}

// restoreChecks evaluates every precondition without changing anything and returns the
// Optimize indices that exist now (to be replaced when replaceExisting is set).
func (s *server) restoreChecks(ctx context.Context, info backupInfo, replaceExisting bool) ([]restoreCheck, []string, error) {
	var checks []restoreCheck
	check := func(name string, passed bool, message string) {
		checks = append(checks, restoreCheck{Name: name, Passed: passed, Message: message})
	}

	check("backupCompleted", info.State == stateCompleted, fmt.Sprintf("Backup [%s] is %s; only a COMPLETED backup can be restored: pick another backup.", info.BackupID, info.State))

	version := ""
	if m := snapshotNamePattern.FindStringSubmatch(info.Details[0].SnapshotName); m != nil {
		version = m[2]
	}
	if s.cfg.OptimizeVersion == "" {
		check("versionMatches", true, fmt.Sprintf("Backup version %s; OPTIMIZE_VERSION is not set, so it is not compared.", version))
	} else {
		check("versionMatches", version == s.cfg.OptimizeVersion, fmt.Sprintf("Backup [%s] was taken of Optimize %s but the sidecar is configured for %s (OPTIMIZE_VERSION); restore it with Optimize %s.", info.BackupID, version, s.cfg.OptimizeVersion, version))
	}

	if s.cfg.OptimizeHealthURL == "" {
		check("optimizeStopped", true, "OPTIMIZE_HEALTH_URL is not set, so whether Optimize runs is not checked; make sure it is stopped.")
	} else {
		running, detail := s.optimizeAnswers(ctx)
		check("optimizeStopped", !running, fmt.Sprintf("Optimize answers at %s (%s); stop Optimize before restoring.", s.cfg.OptimizeHealthURL, detail))
	}

	part1, part2, err := s.optimizeIndices(ctx)
	if err != nil {
		return nil, nil, err
	}
	existing := append(part1, part2...)
	switch {
	case len(existing) == 0:
		check("noOptimizeIndices", true, fmt.Sprintf("No index with the prefix [%s-] exists.", s.cfg.IndexPrefix))
	case replaceExisting:
		check("noOptimizeIndices", true, fmt.Sprintf("%d indices with the prefix [%s-] exist and will be replaced after a safety backup of them has COMPLETED.", len(existing), s.cfg.IndexPrefix))
	default:
		check("noOptimizeIndices", false, fmt.Sprintf("%d indices with the prefix [%s-] exist (%s); delete them, or send {\"replaceExisting\": true} to replace them after a safety backup.", len(existing), s.cfg.IndexPrefix, strings.Join(existing, ", ")))
	}

	busy, err := s.busyWith(ctx)
	if err != nil {
		return nil, nil, err
	}
	if busy == "" {
		check("nothingRunning", true, "No backup or restore is running.")
	} else {
		check("nothingRunning", false, busy+"; wait until it has finished.")
	}
	return checks, existing, nil
}

// optimizeAnswers tells whether anything answers at OPTIMIZE_HEALTH_URL: any HTTP answer means
// Optimize runs; no answer within 5 s means it does not.
func (s *server) optimizeAnswers(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.OptimizeHealthURL, nil)
	if err != nil {
		return false, err.Error()
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	res.Body.Close()
	return true, "HTTP " + res.Status
}

// busyWith names a backup or restore that is running, or returns "".
func (s *server) busyWith(ctx context.Context) (string, error) {
	if s.restores.running() {
		return "Another restore is running in this sidecar", nil
	}
	if n := s.inflight.count(); n > 0 {
		return fmt.Sprintf("%d backup(s) started by this sidecar are still running", n), nil
	}
	var current struct {
		Snapshots []snapshot `json:"snapshots"`
	}
	req := esapi.SnapshotGetRequest{Repository: s.cfg.Repository, Snapshot: []string{"_current"}, FilterPath: []string{"snapshots.snapshot"}}
	if err := s.esCall(ctx, req, &current); err != nil {
		return "", fmt.Errorf("get running snapshots: %w", err)
	}
	if len(current.Snapshots) > 0 {
		return fmt.Sprintf("Snapshot [%s] is running in repository [%s]", current.Snapshots[0].Name, s.cfg.Repository), nil
	}
	return "", nil
}

// startRestore registers the job and runs it in the background.
func (s *server) startRestore(info backupInfo, existing []string) (restoreJob, error) {
	s.restores.mu.Lock()
	if s.restores.activeLocked() {
		s.restores.mu.Unlock()
		return restoreJob{}, &restoreConflictError{checks: []restoreCheck{{Name: "nothingRunning", Message: "Another restore is running in this sidecar; wait until it has finished."}}}
	}
	job := &restoreJob{BackupID: info.BackupID, State: restorePending, Step: "starting", StartTime: ptr(s.now().UTC())}
	for _, d := range info.Details {
		job.Snapshots = append(job.Snapshots, restoreProgress{SnapshotName: d.SnapshotName, State: restorePending})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.restores.job, s.restores.cancel, s.restores.done = job, cancel, done
	copied := *job
	copied.Snapshots = slices.Clone(job.Snapshots)
	s.restores.mu.Unlock()

	s.log.Info("restore started", "backup_id", info.BackupID, "repository", s.cfg.Repository, "replace", len(existing) > 0)
	go func() {
		defer close(done)
		defer cancel()
		err := s.runRestore(ctx, info, existing)
		s.restores.update(func(j *restoreJob) {
			j.EndTime = ptr(s.now().UTC())
			if err != nil {
				j.State = restoreFailed
				j.FailureReason = ptr(err.Error())
				return
			}
			j.State, j.Step = restoreCompleted, "done"
		})
		if err != nil {
			s.log.Error("restore failed", "backup_id", info.BackupID, "err", err)
		} else {
			s.log.Info("restore completed", "backup_id", info.BackupID)
		}
	}()
	return copied, nil
}

// runRestore replaces existing indices (after a safety backup) and restores both parts, one
// after the other, following each through _recovery.
func (s *server) runRestore(ctx context.Context, info backupInfo, existing []string) error {
	step := func(name string) {
		s.restores.update(func(j *restoreJob) { j.State, j.Step = restoreRunning, name })
	}
	if len(existing) > 0 {
		step("safety-backup")
		safetyID, safe, err := s.safetyBackup(ctx)
		s.restores.update(func(j *restoreJob) { j.SafetyBackupID = ptr(safetyID) })
		if err != nil {
			return fmt.Errorf("safety backup [%s] did not complete, nothing was deleted: %w", safetyID, err)
		}
		// Delete only what the completed safety backup holds: data in no snapshot is never
		// deleted.
		if extra := slices.DeleteFunc(slices.Clone(existing), func(ix string) bool { return slices.Contains(safe, ix) }); len(extra) > 0 {
			return fmt.Errorf("indices %v are not in safety backup [%s], nothing was deleted; is Optimize still running?", extra, safetyID)
		}
		step("delete-indices")
		if err := s.restoreCall(ctx, esapi.IndicesDeleteRequest{Index: existing}, nil); err != nil {
			return fmt.Errorf("delete indices %v (all are in safety backup [%s]): %w", existing, safetyID, err)
		}
	}
	snaps, err := s.backupSnapshots(ctx, info.BackupID)
	if err != nil {
		return err
	}
	slices.SortFunc(snaps, func(a, b snapshot) int { return partOf(a.Name) - partOf(b.Name) })
	for i, snap := range snaps {
		step(fmt.Sprintf("restore-part-%d", partOf(snap.Name)))
		if err := s.restoreSnapshot(ctx, snap, i); err != nil {
			return err
		}
	}
	return nil
}

// safetyBackup takes a normal two-part backup of the current indices and waits until it is
// COMPLETED. It returns its ID and the indices it holds.
func (s *server) safetyBackup(ctx context.Context) (string, []string, error) {
	id := "safety-" + strings.ToLower(s.now().UTC().Format("20060102t150405z"))
	if _, err := s.createBackup(ctx, id); err != nil {
		return id, nil, err
	}
	for {
		if err := sleepCtx(ctx, s.cfg.PollInterval); err != nil {
			return id, nil, err
		}
		if s.inflight.has(id) {
			continue // part 2 not started yet
		}
		snaps, err := s.backupSnapshots(ctx, id)
		if err != nil {
			return id, nil, err
		}
		if len(snaps) == 0 {
			return id, nil, errors.New("its snapshots disappeared")
		}
		info := backupState(id, snaps, false, s.now(), 0)
		switch info.State {
		case stateInProgress:
			continue
		case stateCompleted:
			var indices []string
			for _, snap := range snaps {
				indices = append(indices, snap.Indices...)
			}
			return id, indices, nil
		default:
			reason := ""
			if info.FailureReason != nil {
				reason = ": " + *info.FailureReason
			}
			return id, nil, fmt.Errorf("it is %s%s", info.State, reason)
		}
	}
}

// restoreSnapshot starts restoring one snapshot (indices and their aliases, no global state)
// and follows it through _recovery until every shard is done.
func (s *server) restoreSnapshot(ctx context.Context, snap snapshot, index int) error {
	body, _ := json.Marshal(map[string]any{"indices": strings.Join(snap.Indices, ","), "include_global_state": false, "include_aliases": true})
	wait := false
	req := esapi.SnapshotRestoreRequest{Repository: s.cfg.Repository, Snapshot: snap.Name, Body: bytes.NewReader(body), WaitForCompletion: &wait}
	if err := s.restoreCall(ctx, req, nil); err != nil {
		return fmt.Errorf("restore snapshot %s: %w", snap.Name, err)
	}
	for {
		progress, err := s.recoveryProgress(ctx, snap)
		if err != nil {
			return err
		}
		s.restores.update(func(j *restoreJob) { j.Snapshots[index] = progress })
		if progress.State == restoreCompleted {
			return nil
		}
		if err := sleepCtx(ctx, s.cfg.PollInterval); err != nil {
			return err
		}
	}
}

// recoveryShards is the part of the _recovery answer the progress is read from.
type recoveryShards map[string]struct {
	Shards []struct {
		Type    string `json:"type"`
		Stage   string `json:"stage"`
		Primary bool   `json:"primary"`
		Source  struct {
			Snapshot string `json:"snapshot"`
		} `json:"source"`
		Index struct {
			Size struct {
				Total     int64 `json:"total_in_bytes"`
				Recovered int64 `json:"recovered_in_bytes"`
			} `json:"size"`
		} `json:"index"`
	} `json:"shards"`
}

// recoveryProgress reads how far the restore of one snapshot is: shards whose recovery from
// this snapshot is DONE out of the snapshot's shards, and bytes recovered.
func (s *server) recoveryProgress(ctx context.Context, snap snapshot) (restoreProgress, error) {
	ignore := true
	req := esapi.IndicesRecoveryRequest{Index: snap.Indices, IgnoreUnavailable: &ignore,
		FilterPath: []string{"*.shards.type", "*.shards.stage", "*.shards.primary", "*.shards.source.snapshot", "*.shards.index.size"}}
	var answer recoveryShards
	if err := s.esCall(ctx, req, &answer); err != nil {
		return restoreProgress{}, fmt.Errorf("read restore progress of %s: %w", snap.Name, err)
	}
	p := restoreProgress{SnapshotName: snap.Name, State: restoreRunning, ShardsTotal: snap.Shards.Successful}
	for _, ix := range answer {
		for _, sh := range ix.Shards {
			if sh.Type != "SNAPSHOT" || !sh.Primary || sh.Source.Snapshot != snap.Name {
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
	return p, nil
}

// handleRestoreStatus reports the restore job of a backup: this process's job if it ran it,
// else what Elasticsearch's _recovery shows (after a restart the job is rebuilt from there).
func (s *server) handleRestoreStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := validateBackupID(id); err != nil {
		s.writeError(w, r, err)
		return
	}
	if job, ok := s.restores.snapshotOf(id); ok {
		writeJSON(w, http.StatusOK, job)
		return
	}
	info, snaps, err := s.backupAndSnapshots(r, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	slices.SortFunc(snaps, func(a, b snapshot) int { return partOf(a.Name) - partOf(b.Name) })
	job := restoreJob{BackupID: info.BackupID, Step: "unknown (not started by this process)"}
	seen, done := 0, 0
	for _, snap := range snaps {
		p, err := s.recoveryProgress(r.Context(), snap)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		switch {
		case p.State == restoreCompleted:
			seen++
			done++
		case p.ShardsDone > 0 || p.BytesTotal > 0:
			seen++
		default:
			p.State = restorePending
		}
		job.Snapshots = append(job.Snapshots, p)
	}
	switch {
	case seen == 0:
		s.writeError(w, r, &noRestoreError{id: id})
		return
	case done == len(snaps):
		job.State = restoreCompleted
	case seen > done:
		job.State = restoreRunning
	default:
		// Some parts restored, the others never started, and no job runs here: the sidecar
		// that ran it stopped in between.
		job.State = restoreFailed
		job.FailureReason = ptr("Elasticsearch shows only part of this backup restored and no restore job is running (the sidecar stopped during the restore?); delete the restored indices and restore again.")
	}
	writeJSON(w, http.StatusOK, job)
}

// noRestoreError means no restore of the backup is known to this process or Elasticsearch.
type noRestoreError struct{ id string }

func (e *noRestoreError) Error() string {
	return fmt.Sprintf("No restore of backup [%s] is running or recorded in Elasticsearch; start one with POST .../%s/restore.", e.id, e.id)
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
