package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Restore follows Optimize's documented runbook as one admin call. The handler reads the
// backup's snapshots once, checks every precondition without changing anything, and fixes a
// plan (exact snapshot and index names) that the job (restorejob.go) carries out, and nothing else.

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
	// ReplaceExisting lets existing indices be replaced once a safety backup of them COMPLETED.
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
	// WaitingFor is what the running job waits for (a snapshot, a recovery), since WaitingSince.
	WaitingFor   *string    `json:"waitingFor,omitempty"`
	WaitingSince *time.Time `json:"waitingSince,omitempty"`
	// Repairs counts, by index, how often the job deleted and restored again an index that
	// Elasticsearch could not recover.
	Repairs map[string]int `json:"repairs,omitempty"`
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

// restoreKey is the registry key of the one restore job a process runs.
const restoreKey = "restore"

// handleRestore checks the preconditions of restoring a backup and, unless it is a dry run,
// starts the restore job (admin only). The family decides how the dry run shows the ID.
func (s *server) handleRestore(f family) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var req restoreRequest
		if r.ContentLength != 0 {
			if err := decodeBody(w, r, &req); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		// The checks and the start go on if the caller hangs up: a half-started job is worse.
		ctx := context.WithoutCancel(r.Context())
		// The job document is read first and the restore starts only if it is still at this
		// version: a DELETE (which writes it) after this point makes the start fail, so the
		// backup read below cannot be one that is being deleted.
		stored, err := s.loadJob(ctx)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		info, snaps, err := s.backupAndSnapshots(ctx, id)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		checks, plan, err := s.restoreChecks(ctx, info, snaps, req.ReplaceExisting, stored)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		passed := !slices.ContainsFunc(checks, func(c restoreCheck) bool { return !c.Passed })
		if req.DryRun {
			writeJSON(w, http.StatusOK, map[string]any{"backupId": info.wire(f == legacy).BackupID, "dryRun": true, "wouldRestore": passed, "checks": checks})
			return
		}
		if !passed {
			s.writeError(w, r, restoreRefused(checks))
			return
		}
		job, err := s.startRestore(ctx, info.BackupID, plan, stored)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusAccepted, job)
	}
}

// restoreRefused is the 409 of a restore whose preconditions failed, with their messages.
func restoreRefused(checks []restoreCheck) error {
	var failed []string
	for _, c := range checks {
		if !c.Passed {
			failed = append(failed, c.Message)
		}
	}
	return conflict("Restore refused, nothing was changed: %s", strings.Join(failed, " "))
}

// restoreChecks evaluates every precondition without changing anything, and returns the plan
// the job carries out if they all pass (with replaceExisting, the indices it replaces).
func (s *server) restoreChecks(ctx context.Context, info backupInfo, snaps []snapshot, replaceExisting bool, stored storedJob) ([]restoreCheck, restorePlan, error) {
	var checks []restoreCheck
	check := func(name string, passed bool, message string) {
		checks = append(checks, restoreCheck{Name: name, Passed: passed, Message: message})
	}
	plan, backupIndices := planOf(snaps)
	if info.State == stateCompleted {
		check("backupCompleted", true, fmt.Sprintf("Backup [%s] is COMPLETED.", info.BackupID))
	} else {
		check("backupCompleted", false, fmt.Sprintf("Backup [%s] is %s; only a COMPLETED backup can be restored: pick another backup.", info.BackupID, info.State))
	}

	if s.cfg.OptimizeVersion == "" {
		check("versionMatches", true, fmt.Sprintf("Backup version %s; OPTIMIZE_VERSION is not set, so it is not compared.", plan.Version))
	} else {
		check("versionMatches", plan.Version == s.cfg.OptimizeVersion, fmt.Sprintf("Backup [%s] was taken of Optimize %s but the sidecar is configured for %s (OPTIMIZE_VERSION); restore it with Optimize %s.", info.BackupID, plan.Version, s.cfg.OptimizeVersion, plan.Version))
	}

	if s.cfg.OptimizeHealthURL == "" {
		check("optimizeStopped", true, "OPTIMIZE_HEALTH_URL is not set, so whether Optimize runs is not checked; make sure it is stopped.")
	} else {
		stopped, detail := s.optimizeStopped(ctx)
		check("optimizeStopped", stopped, detail)
	}

	in, part1, part2, err := s.installationIndices(ctx)
	if err != nil {
		return nil, plan, err
	}
	if foreign := s.foreignIndices(in, backupIndices); len(foreign) > 0 {
		check("backupHoldsOnlyThisInstallation", false, fmt.Sprintf("Backup [%s] holds indices that are not this installation's (prefix [%s], see the README's index rule): [%s]; restoring it could overwrite another installation. Restore those snapshots by hand with the Elasticsearch restore API, naming only this installation's indices.",
			info.BackupID, s.cfg.IndexPrefix, strings.Join(foreign, ", ")))
	} else {
		check("backupHoldsOnlyThisInstallation", true, fmt.Sprintf("Every index of backup [%s] belongs to the installation with prefix [%s].", info.BackupID, s.cfg.IndexPrefix))
	}

	existing := append(slices.Clone(part1), part2...)
	if replaceExisting && len(existing) > 0 {
		if err := s.planReplace(ctx, &plan, existing); err != nil {
			return nil, plan, err
		}
	}
	switch {
	case len(existing) == 0:
		check("noOptimizeIndices", true, fmt.Sprintf("No index of the installation with prefix [%s] exists.", s.cfg.IndexPrefix))
	case replaceExisting:
		plan.Replace = existing
		check("noOptimizeIndices", true, fmt.Sprintf("%d indices of the installation with prefix [%s] exist and will be replaced: they get a write block, a safety backup of them must COMPLETE, and only then are they deleted.", len(existing), s.cfg.IndexPrefix))
	default:
		check("noOptimizeIndices", false, fmt.Sprintf("%d indices of the installation with prefix [%s] exist (%s); delete them, or send {\"replaceExisting\": true} to replace them after a safety backup.", len(existing), s.cfg.IndexPrefix, strings.Join(existing, ", ")))
	}

	busy, err := s.busyWith(ctx, stored, info.BackupID)
	if err != nil {
		return nil, plan, err
	}
	if busy == "" {
		check("nothingRunning", true, "No backup or restore is running.")
	} else {
		check("nothingRunning", false, busy+"; wait until it has finished.")
	}
	return checks, plan, nil
}

// planOf is the plan of restoring these snapshots, in part order, and all their indices.
func planOf(snaps []snapshot) (plan restorePlan, indices []string) {
	snaps = slices.Clone(snaps)
	slices.SortFunc(snaps, func(a, b snapshot) int { return partOf(a.Name) - partOf(b.Name) })
	for _, sn := range snaps {
		plan.Parts = append(plan.Parts, planPart{Snapshot: sn.Name, UUID: sn.UUID, Indices: slices.Clone(sn.Indices), Shards: sn.Shards.Successful, StartMillis: sn.StartMillis})
		indices = append(indices, sn.Indices...)
		if _, v, _, _, ok := parseSnapshotName(sn.Name); ok {
			plan.Version = v
		}
	}
	return plan, indices
}

// planReplace records in the plan the UUIDs of the existing indices to replace, and which of
// them had a write block before the restore (left as they are).
func (s *server) planReplace(ctx context.Context, plan *restorePlan, existing []string) error {
	facts, err := s.indexSettings(ctx, existing)
	if err != nil {
		return err
	}
	plan.ReplaceUUIDs = map[string]string{}
	for _, ix := range existing {
		plan.ReplaceUUIDs[ix] = facts[ix].UUID
		if facts[ix].WriteBlocked {
			plan.PreBlocked = append(plan.PreBlocked, ix)
		}
	}
	return nil
}

// probeTries and probeGap: the connection must be refused this many times in a row, this far
// apart, so that an Optimize still starting up (its port not yet open) is not taken for stopped.
const (
	probeTries = 3
	probeGap   = 500 * time.Millisecond
)

// optimizeStopped tells whether Optimize is provably stopped: only a refused connection at
// OPTIMIZE_HEALTH_URL, probeTries times in a row, proves it. An answer, a timeout, a TLS error
// or a name that does not resolve refuses the restore.
func (s *server) optimizeStopped(ctx context.Context) (stopped bool, detail string) {
	for try := range probeTries {
		if try > 0 && sleepCtx(ctx, probeGap) != nil {
			return false, "The request was cancelled before Optimize could be probed."
		}
		if stopped, detail = s.probeOptimize(ctx); !stopped {
			return false, detail
		}
	}
	return stopped, detail
}

// probeOptimize is one probe of OPTIMIZE_HEALTH_URL.
func (s *server) probeOptimize(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.OptimizeHealthURL, nil)
	if err != nil {
		return false, fmt.Sprintf("OPTIMIZE_HEALTH_URL %s is not a URL (%v); fix it, or unset it and make sure Optimize is stopped.", s.cfg.OptimizeHealthURL, err)
	}
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		res.Body.Close()
		return false, fmt.Sprintf("Optimize answers at %s (HTTP %s); stop Optimize before restoring.", s.cfg.OptimizeHealthURL, res.Status)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true, fmt.Sprintf("Nothing listens at %s (connection refused %d times in a row): Optimize is stopped.", s.cfg.OptimizeHealthURL, probeTries)
	}
	return false, fmt.Sprintf("Cannot confirm that Optimize is stopped: %s did not refuse the connection but gave no answer (%v); stop Optimize, or fix OPTIMIZE_HEALTH_URL so that it points at Optimize.", s.cfg.OptimizeHealthURL, err)
}

// foreignIndices are the indices of a backup that are not this installation's, by the
// installations the cluster shows (in) and those the backup's own index list shows.
func (s *server) foreignIndices(in installation, backupIndices []string) []string {
	snapIn := newInstallation(s.cfg.IndexPrefix, append(slices.Clone(in.others), otherInstallations(s.cfg.IndexPrefix, backupIndices, nil)...))
	_, _, foreign := snapIn.split(backupIndices)
	return foreign
}

// busyWith names a backup or restore that is running, or returns "".
func (s *server) busyWith(ctx context.Context, stored storedJob, id string) (string, error) {
	if job := stored.doc; stored.found && job.active() {
		return fmt.Sprintf("The restore of backup [%s] is %s (step %s)", job.BackupID, job.State, job.Step), nil
	}
	var drill drillDoc
	if _, found, err := s.loadDoc(ctx, s.drillDocID(), &drill); err != nil {
		return "", err
	} else if found && drill.State == drillRunning {
		return fmt.Sprintf("The drill of backup [%s] is running (step %s)", drill.BackupID, drill.Step), nil
	}
	marks, _, err := s.loadMarks(ctx)
	if err != nil {
		return "", err
	}
	if s.markedForDelete(marks, id) {
		return fmt.Sprintf("Backup [%s] is being deleted (a DELETE began at %s and has not confirmed its end)", id, time.UnixMilli(marks.Backups[id]).UTC().Format(time.RFC3339)), nil
	}
	if n := s.backups.count(); n > 0 {
		return fmt.Sprintf("%d backup(s) started by this sidecar are still running", n), nil
	}
	running, err := s.runningSnapshots(ctx)
	if err != nil {
		return "", err
	}
	if len(running) > 0 {
		return fmt.Sprintf("Snapshot [%s] is running in repository [%s]", running[0].Name, s.cfg.Repository), nil
	}
	return "", nil
}

// handleRestoreStatus reports the restore job of a backup as stored in Elasticsearch. It
// changes nothing (a stopped job is taken over by watchRestoreJobs, never here).
func (s *server) handleRestoreStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.checkStatusRequest(id); err != nil {
		s.writeError(w, r, err)
		return
	}
	stored, err := s.loadJob(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if doc := stored.doc; !stored.found || doc.BackupID != id {
		s.writeError(w, r, notFound("No restore of backup [%s] is running or recorded in Elasticsearch (only the latest restore of this installation is kept); start one with POST .../%s/restore.", id, id))
		return
	}
	writeJSON(w, http.StatusOK, stored.doc.restoreJob)
}
