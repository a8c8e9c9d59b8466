package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"
)

// Scheduled backups: at each slot of OPTIMIZE_BACKUP_SCHEDULE every replica creates the backup
// whose ID depends on the slot only (slotID), so replicas (and one restarted within the slot)
// race for the same snapshot name and Elasticsearch's name check leaves one backup per slot.
// The replica that won waits for it to end, drills it if configured, and applies retention.

// kindScheduled marks the snapshots of a scheduled backup (snapshotMetadata.Kind): retention
// deletes these and nothing else.
const kindScheduled = "scheduled"

// backupSchedule is a parsed OPTIMIZE_BACKUP_SCHEDULE in its time zone (see parseSchedule).
type backupSchedule struct {
	expr string
	spec *cron.SpecSchedule
	loc  *time.Location
}

// next is the first slot after t.
func (b *backupSchedule) next(t time.Time) time.Time { return b.spec.Next(t.In(b.loc)) }

// nextSlots are the n slots after t.
func (b *backupSchedule) nextSlots(t time.Time, n int) []time.Time {
	out := make([]time.Time, 0, n)
	for len(out) < n {
		t = b.next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// missed returns the latest slot at or before now if it is less than one period old (the
// period being the gap between it and the slot before): a slot missed while no sidecar ran,
// taken late at start. An older slot is not taken: its backup would be a surprise.
func (b *backupSchedule) missed(now time.Time) (time.Time, bool) {
	first := b.next(now)
	if first.IsZero() {
		return time.Time{}, false
	}
	// Look back over a window that doubles until it holds two slots (cron has no "previous").
	window := 2 * b.next(first).Sub(first)
	for ; window > 0 && window < 6*366*24*time.Hour; window *= 2 {
		var last, beforeLast time.Time
		for t := b.next(now.Add(-window)); !t.IsZero() && !t.After(now); t = b.next(t) {
			beforeLast, last = last, t
		}
		if !beforeLast.IsZero() {
			return last, now.Sub(last) < last.Sub(beforeLast)
		}
	}
	return time.Time{}, false
}

// slotID is the backup ID of a slot for the installation with this prefix: the slot's Unix
// seconds times 1000 plus prefixTag. An integer, valid on both route families, sorted by time,
// the same on every replica, and different for two installations sharing a repository and a
// schedule (snapshot names do not say whose they are: only one of them could back up).
func slotID(slot time.Time, prefix string) string {
	return strconv.FormatInt(slot.Unix()*1000+int64(prefixTag(prefix)), 10)
}

// prefixTag is the installation's number in its slot IDs.
func prefixTag(prefix string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(prefix))
	return h.Sum32() % 1000
}

// slotOf is the slot of this installation's slot ID; ok is false for any other ID.
func slotOf(id, prefix string) (time.Time, bool) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 0 || n%1000 != int64(prefixTag(prefix)) || strconv.FormatInt(n, 10) != id {
		return time.Time{}, false
	}
	return time.Unix(n/1000, 0), true
}

// runSchedule takes a backup at every slot until ctx ends, first a missed one (see missed); a
// slot that passes while the previous one still runs is skipped, and logged. It closes done.
func (s *server) runSchedule(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	if slot, ok := s.cfg.Schedule.missed(s.now()); ok {
		s.runSlot(ctx, slot)
	}
	for {
		slot := s.cfg.Schedule.next(s.now())
		if slot.IsZero() {
			s.log.Warn("the schedule has no further slot; no more scheduled backups", "schedule", s.cfg.Schedule.expr)
			return
		}
		if err := sleepCtx(ctx, slot.Sub(s.now())); err != nil {
			return
		}
		s.runSlot(ctx, slot)
		if skipped := s.cfg.Schedule.nextSlots(slot, 1); len(skipped) > 0 && skipped[0].Before(s.now()) {
			s.log.Warn("scheduled backup took longer than its period; slots that passed meanwhile are skipped", "schedule", s.cfg.Schedule.expr, "skipped_from", skipped[0].Format(time.RFC3339))
		}
	}
}

// runSlot creates the backup of one slot, waits for it to end, drills it if configured, and
// applies retention. Only the replica whose create Elasticsearch accepted goes past the create.
func (s *server) runSlot(ctx context.Context, slot time.Time) {
	id := slotID(slot, s.cfg.IndexPrefix)
	log := s.log.With("backup_id", id, "repository", s.cfg.Repository, "slot", slot.Format(time.RFC3339))
	record := func(outcome, reason string) {
		// Recorded even while stopping: the last run must not read "started" for ever.
		recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ESTimeout)
		defer cancel()
		run := scheduleRun{Slot: slot.UTC(), BackupID: id, Outcome: outcome, Reason: reason, Sidecar: s.owner}
		if err := s.putDoc(recordCtx, s.scheduleDocID(), &run, &run.docStamp); err != nil {
			s.log.Warn("cannot record the scheduled run for GET /actuator/schedule", "backup_id", id, "err", err)
		}
	}
	// The create must not be cut off by a SIGTERM between part 1 and the hand-over of part 2.
	names, err := s.createBackup(context.WithoutCancel(ctx), id, kindScheduled)
	switch {
	case names != nil && err != nil: // part 1 started, part 2 refused: the sidecar is stopping
		log.Error("scheduled backup: part 1 started, but the sidecar is stopping before part 2", "outcome", stateIncomplete, "err", err)
		record(stateIncomplete, err.Error())
		return
	case err != nil && ctx.Err() != nil:
		log.Info("scheduled backup: the sidecar is stopping; the slot was not taken", "outcome", "not taken", "err", err)
		return
	case errors.Is(err, errIDTaken):
		// Ours if it is this installation's scheduled backup (another replica's, or this one's
		// before a restart); else a collision.
		snaps, readErr := s.backupSnapshots(ctx, id)
		switch {
		case readErr != nil:
			log.Warn("scheduled backup: the slot's backup ID is taken, and who holds it cannot be read", "outcome", "taken", "err", readErr)
		case s.scheduledOf(snaps):
			log.Info("scheduled backup: the slot's backup exists already (another replica took it, or this one before a restart)", "outcome", "taken")
		default:
			log.Error("scheduled backup: the slot's backup ID is taken by a backup that is not this installation's scheduled backup; this slot has no backup", "outcome", "collision", "err", err)
			record("collision", err.Error())
		}
		return
	case err != nil:
		log.Error("scheduled backup could not start", "outcome", "failed to start", "err", err)
		record("failed to start", err.Error())
		return
	}
	log.Info("scheduled backup started")
	record("started", "")
	info, err := s.waitBackupEnd(ctx, id)
	switch {
	case ctx.Err() != nil:
		log.Info("scheduled backup: the sidecar stops before the backup ended; GET shows how it ends", "outcome", "started")
		return
	case err != nil:
		log.Error("scheduled backup: cannot tell how it ended", "outcome", "unknown", "err", err)
		record("unknown", err.Error())
		return
	}
	if info.State != stateCompleted {
		log.Error("scheduled backup ended", "outcome", info.State, "reason", derefString(info.FailureReason))
	} else {
		log.Info("scheduled backup ended", "outcome", info.State)
	}
	record(info.State, derefString(info.FailureReason))
	if info.State == stateCompleted && s.cfg.VerifyScheduled {
		s.verifyScheduled(ctx, id, log)
	}
	s.applyRetention(ctx)
}

// scheduleRun is the last slot a replica of this installation ran, stored in the jobs index
// ("schedule-{prefix}"), so every replica reports the same last run.
type scheduleRun struct {
	Slot     time.Time `json:"slot"`
	BackupID string    `json:"backupId"`
	// Outcome is "started", the backup's final state, "failed to start" or "collision".
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	Sidecar string `json:"sidecar"`
	docStamp
}

// scheduleDocID is the ID of this installation's last scheduled run.
func (s *server) scheduleDocID() string { return "schedule-" + s.cfg.IndexPrefix }

// waitBackupEnd reads the backup until it is no longer IN_PROGRESS.
func (s *server) waitBackupEnd(ctx context.Context, id string) (backupInfo, error) {
	deadline := s.now().Add(s.cfg.RestoreWaitTimeout)
	for {
		info, snaps, err := s.backupAndSnapshots(ctx, id)
		if err == nil && info.State == stateIncomplete {
			info = s.explainIncomplete(ctx, info, snaps) // the run's record says why, as GET does
		}
		if err == nil && info.State != stateInProgress {
			return info, nil
		}
		if s.now().After(deadline) {
			return backupInfo{}, fmt.Errorf("still not ended after %v (OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT); last error: %v", s.cfg.RestoreWaitTimeout, err)
		}
		if err := sleepCtx(ctx, s.cfg.PollInterval); err != nil {
			return backupInfo{}, err
		}
	}
}

// scheduleView is the answer of GET /actuator/schedule.
type scheduleView struct {
	Enabled   bool      `json:"enabled"`
	Schedule  string    `json:"schedule,omitempty"`
	Timezone  string    `json:"timezone,omitempty"`
	NextSlots []string  `json:"nextSlots,omitempty"`
	LastRun   *lastRun  `json:"lastRun"`
	Retention retention `json:"retention"`
}

// lastRun is scheduleRun as GET shows it, with the state its backup has now ("" for none).
type lastRun struct {
	Slot     string `json:"slot"`
	BackupID string `json:"backupId"`
	Outcome  string `json:"outcome"`
	Reason   string `json:"reason,omitempty"`
	State    string `json:"state,omitempty"`
}

// retention is the retention settings and what retention would delete now.
type retention struct {
	Keep        int               `json:"keep,omitempty"`
	MaxAge      string            `json:"maxAge,omitempty"`
	WouldDelete []retentionDelete `json:"wouldDelete"`
}

// handleSchedule reports the schedule, its next slots, the last scheduled backup and what
// retention would delete next, read from Elasticsearch: every replica answers the same.
func (s *server) handleSchedule(w http.ResponseWriter, r *http.Request) {
	view := scheduleView{Retention: retention{Keep: s.cfg.RetentionKeep, WouldDelete: []retentionDelete{}}}
	if s.cfg.RetentionMaxAge > 0 {
		view.Retention.MaxAge = s.cfg.RetentionMaxAge.String()
	}
	if s.cfg.Schedule == nil {
		writeJSON(w, http.StatusOK, view)
		return
	}
	view.Enabled, view.Schedule, view.Timezone = true, s.cfg.Schedule.expr, s.cfg.Schedule.loc.String()
	now := s.now()
	for _, t := range s.cfg.Schedule.nextSlots(now, 3) {
		view.NextSlots = append(view.NextSlots, t.Format(time.RFC3339))
	}
	scheduled, err := s.scheduledBackups(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var run scheduleRun
	_, found, err := s.loadDoc(r.Context(), s.scheduleDocID(), &run)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if found {
		view.LastRun = &lastRun{Slot: run.Slot.In(s.cfg.Schedule.loc).Format(time.RFC3339), BackupID: run.BackupID, Outcome: run.Outcome, Reason: run.Reason}
		if i := slices.IndexFunc(scheduled, func(b scheduledBackup) bool { return b.BackupID == run.BackupID }); i >= 0 {
			view.LastRun.State = scheduled[i].State // what the backup is now
		}
	}
	view.Retention.WouldDelete = append(view.Retention.WouldDelete, retentionPlan(scheduled, s.cfg.RetentionKeep, s.cfg.RetentionMaxAge, now)...)
	writeJSON(w, http.StatusOK, view)
}

// verifyScheduled drills a scheduled backup that completed and waits for this drill's result
// (the one with its start time), so that retention runs after it.
func (s *server) verifyScheduled(ctx context.Context, id string, log *slog.Logger) {
	// Not cut off by a SIGTERM halfway through taking the drill document (as handleVerify).
	started, err := s.startDrill(context.WithoutCancel(ctx), id)
	if err != nil {
		log.Error("scheduled drill could not start", "outcome", "not verified", "err", err)
		return
	}
	deadline := s.now().Add(s.cfg.RestoreWaitTimeout + 2*s.staleAfter())
	ended := func(r drillResult) bool {
		return r.BackupID == id && r.State != drillRunning && r.StartTime != nil && r.StartTime.Equal(*started.StartTime)
	}
	for sleepCtx(ctx, s.cfg.PollInterval) == nil {
		// The backup's result, or (should that write have failed) the drill's own document.
		r := s.lastDrill(ctx, id)
		if r == nil || !ended(*r) {
			var doc drillDoc
			if _, found, err := s.loadDoc(ctx, s.drillDocID(), &doc); err == nil && found && ended(doc.drillResult) {
				r = &doc.drillResult
			}
		}
		if r != nil && ended(*r) {
			log.Info("scheduled drill ended", "outcome", r.State, "reason", derefString(r.FailureReason))
			return
		}
		if s.now().After(deadline) {
			log.Error("scheduled drill: no result in time; retention runs without it", "outcome", "unknown")
			return
		}
	}
}

// derefString is *p, or "" for nil.
func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
