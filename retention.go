package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Retention deletes scheduled backups only (scheduledOf: metadata only the scheduler writes);
// manual backups, Optimize's own and restore safety backups are never candidates.

// scheduledBackup is one scheduled backup of this installation, with the slot it was taken for.
type scheduledBackup struct {
	backupInfo
	slot time.Time
}

// retentionDelete is one backup retention deletes, and why.
type retentionDelete struct {
	BackupID string `json:"backupId"`
	Slot     string `json:"slot"`
	State    string `json:"state"`
	Reason   string `json:"reason"`
}

// scheduledListFields are the list's fields and the metadata keys scheduledOf reads.
var scheduledListFields = append(listFields[:len(listFields):len(listFields)], "snapshots.metadata.kind", "snapshots.metadata.indexPrefix")

// scheduledBackups returns this installation's scheduled backups, newest slot first. Only the
// snapshots whose IDs are slots are read: retention's cost follows the scheduled backups it
// keeps, not the repository.
func (s *server) scheduledBackups(ctx context.Context) ([]scheduledBackup, error) {
	isSlot := func(id string) bool { _, ok := slotOf(id, s.cfg.IndexPrefix); return ok }
	byID, err := s.backupsNamed(ctx, isSlot, scheduledListFields)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []scheduledBackup
	for id, snaps := range byID {
		slot, ok := slotOf(id, s.cfg.IndexPrefix)
		if !ok || !s.scheduledOf(snaps) {
			continue
		}
		out = append(out, scheduledBackup{backupState(id, snaps, s.backups.has(id), now, s.cfg.Part2Grace), slot})
	}
	slices.SortFunc(out, func(a, b scheduledBackup) int { return b.slot.Compare(a.slot) })
	return out, nil
}

// scheduledOf tells whether every snapshot is a scheduled backup's of this installation.
func (s *server) scheduledOf(snaps []snapshot) bool {
	for _, sn := range snaps {
		if sn.Metadata["kind"] != kindScheduled || sn.Metadata["indexPrefix"] != s.cfg.IndexPrefix {
			return false
		}
	}
	return len(snaps) > 0
}

// retentionPlan is what retention deletes of these scheduled backups (newest slot first) at
// now: a COMPLETED backup beyond the keep newest COMPLETED ones or older than maxAge, and a
// FAILED or INCOMPLETE backup older than the newest COMPLETED one, which is always kept. A
// running backup is never deleted, and with neither limit set nothing is.
func retentionPlan(backups []scheduledBackup, keep int, maxAge time.Duration, now time.Time) []retentionDelete {
	if keep <= 0 && maxAge <= 0 {
		return nil
	}
	var out []retentionDelete
	drop := func(b scheduledBackup, reason string) {
		out = append(out, retentionDelete{BackupID: b.BackupID, Slot: b.slot.UTC().Format(time.RFC3339), State: b.State, Reason: reason})
	}
	completed := 0
	var newestCompleted time.Time
	for _, b := range backups {
		switch b.State {
		case stateCompleted:
			completed++
			switch {
			case completed == 1:
				newestCompleted = b.slot // always kept
			case keep > 0 && completed > keep:
				drop(b, fmt.Sprintf("more than %d COMPLETED scheduled backups (OPTIMIZE_BACKUP_RETENTION_KEEP)", keep))
			case maxAge > 0 && now.Sub(b.slot) > maxAge:
				drop(b, fmt.Sprintf("older than %v (OPTIMIZE_BACKUP_RETENTION_MAX_AGE)", maxAge))
			}
		case stateFailed, stateIncomplete:
			if !newestCompleted.IsZero() && b.slot.Before(newestCompleted) {
				drop(b, fmt.Sprintf("%s and older than the newest COMPLETED scheduled backup", b.State))
			}
		}
	}
	return out
}

// applyRetention deletes what retentionPlan says through DELETE's path (delete marks, refusal
// while a restore or drill uses the backup). A backup that cannot be deleted is logged and kept.
func (s *server) applyRetention(ctx context.Context) {
	if s.cfg.RetentionKeep <= 0 && s.cfg.RetentionMaxAge <= 0 {
		return
	}
	scheduled, err := s.scheduledBackups(ctx)
	if err != nil {
		s.log.Error("retention: cannot list the scheduled backups; nothing deleted", "repository", s.cfg.Repository, "err", err)
		return
	}
	// The plan keeps the newest COMPLETED scheduled backup; it must still be there at each delete
	// (a DELETE of it meanwhile would otherwise leave none).
	keeper := ""
	if i := slices.IndexFunc(scheduled, func(b scheduledBackup) bool { return b.State == stateCompleted }); i >= 0 {
		keeper = scheduled[i].BackupID
	}
	check := func(snaps []snapshot) error {
		// Confirmed on the snapshots as read right before the delete.
		if !s.scheduledOf(snaps) {
			return errors.New("not a scheduled backup of this installation (any more); retention deletes scheduled backups only")
		}
		if info, _, err := s.backupAndSnapshots(ctx, keeper); err != nil || info.State != stateCompleted {
			return fmt.Errorf("the newest COMPLETED scheduled backup [%s] the plan keeps is gone or no longer COMPLETED (%v); retention stops until the next slot", keeper, err)
		}
		// A DELETE of it may be under way (its snapshots still there, its delete queued).
		if marks, _, err := s.loadMarks(ctx); err != nil || s.markedForDelete(marks, keeper) {
			return fmt.Errorf("the newest COMPLETED scheduled backup [%s] the plan keeps is being deleted, or that cannot be told (%v); retention stops until the next slot", keeper, err)
		}
		return nil
	}
	plan := retentionPlan(scheduled, s.cfg.RetentionKeep, s.cfg.RetentionMaxAge, s.now())
	if s.cfg.VerifyScheduled {
		// With drills, the newest backup whose drill passed is kept too: the newest COMPLETED
		// one may be one whose drill failed.
		if verified := s.newestVerified(ctx, scheduled); verified != "" {
			plan = slices.DeleteFunc(plan, func(d retentionDelete) bool { return d.BackupID == verified })
		}
	}
	for _, d := range plan {
		if ctx.Err() != nil {
			return // stopping: the next slot's retention deletes the rest
		}
		// A delete once begun is not cut off by a SIGTERM: its delete mark must not be left behind.
		names, err := s.deleteBackup(context.WithoutCancel(ctx), d.BackupID, check)
		if err != nil {
			s.log.Warn("retention: backup kept", "backup_id", d.BackupID, "repository", s.cfg.Repository, "err", err)
			continue
		}
		s.log.Info("retention: backup deleted", "backup_id", d.BackupID, "repository", s.cfg.Repository, "reason", d.Reason, "snapshot", names)
	}
}

// maxVerifiedLookups bounds how many COMPLETED backups newestVerified reads (two requests each).
const maxVerifiedLookups = 50

// newestVerified is the newest COMPLETED scheduled backup whose last drill (of its present
// snapshots) passed, or "".
func (s *server) newestVerified(ctx context.Context, scheduled []scheduledBackup) string {
	looked := 0
	for _, b := range scheduled {
		if b.State != stateCompleted {
			continue
		}
		if looked++; looked > maxVerifiedLookups {
			break
		}
		_, snaps, err := s.backupAndSnapshots(ctx, b.BackupID)
		if r := s.lastDrill(ctx, b.BackupID); err == nil && r != nil && r.State == drillPassed && drilledThese(*r, snaps) {
			return b.BackupID
		}
	}
	return ""
}
