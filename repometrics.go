package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Metrics read from the repository and the jobs index, not from this process: every replica
// reports the same, so a staleness alert fires whichever one is scraped.

// metricsFields are the list's fields and what isOwnSnapshot reads (metadata prefix, indices).
var metricsFields = append(listFields[:len(listFields):len(listFields)], "snapshots.metadata.indexPrefix", "snapshots.indices")

// repositoryMetrics writes the metrics read from Elasticsearch in Prometheus' text format.
func (s *server) repositoryMetrics(ctx context.Context, b *strings.Builder) {
	if s.cfg.Schedule != nil {
		if next := s.cfg.Schedule.next(s.now()); !next.IsZero() {
			metric(b, "optimize_backup_schedule_next_slot_timestamp_seconds", "gauge", "When the next scheduled backup is due.", "", next.Unix())
		}
	}
	if s.cfg.Repository == "" {
		return
	}
	byID, err := s.backupsByID(ctx, metricsFields)
	up := 1
	if err != nil {
		up = 0
		s.log.Warn("metrics: cannot read the repository", "repository", s.cfg.Repository, "err", err)
	}
	metric(b, "optimize_backup_repository_up", "gauge", "1 when the repository could be read for these metrics.", "", up)
	if err != nil {
		return
	}
	counts := map[string]int{}
	var lastSuccess int64
	now := s.now()
	for id, snaps := range byID {
		if slices.ContainsFunc(snaps, func(sn snapshot) bool { return !s.isOwnSnapshot(sn) }) {
			continue // not every snapshot is this installation's, as DELETE tells it
		}
		info := backupState(id, snaps, s.backups.has(id), now, s.cfg.Part2Grace)
		counts[info.State]++
		if info.State == stateCompleted {
			for _, sn := range snaps {
				lastSuccess = max(lastSuccess, sn.EndMillis)
			}
		}
	}
	fmt.Fprintf(b, "# HELP optimize_backup_backups Backups of this installation in the repository, by state.\n# TYPE optimize_backup_backups gauge\n")
	for _, state := range []string{stateCompleted, stateInProgress, stateFailed, stateIncomplete, stateIncompatible} {
		fmt.Fprintf(b, "optimize_backup_backups{state=%q} %d\n", state, counts[state])
	}
	if lastSuccess > 0 {
		metric(b, "optimize_backup_last_success_timestamp_seconds", "gauge", "When the newest COMPLETED backup of this installation ended.", "", lastSuccess/1000)
	}
	var drill drillDoc
	if _, found, err := s.loadDoc(ctx, s.drillDocID(), &drill); err == nil && found {
		// While a drill runs, the one before it is the last result: the metric does not flap.
		last := drill.Previous
		if drill.State != drillRunning && drill.EndTime != nil {
			last = &drillOutcome{BackupID: drill.BackupID, State: drill.State, EndTime: *drill.EndTime}
		}
		if last != nil {
			passed := 0
			if last.State == drillPassed {
				passed = 1
			}
			metric(b, "optimize_backup_last_verification_success", "gauge", "1 when the last restore drill passed, 0 when it failed.", "", passed)
			metric(b, "optimize_backup_last_verification_info", "gauge", "The backup the last restore drill verified (always 1).", fmt.Sprintf("{backup_id=%q}", last.BackupID), 1)
			metric(b, "optimize_backup_last_verification_timestamp_seconds", "gauge", "When the last restore drill ended.", "", last.EndTime.Unix())
		}
	}
}

// metric writes one metric with its help and type lines.
func metric[T int | int64](b *strings.Builder, name, kind, help, labels string, value T) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n%s%s %d\n", name, help, name, kind, name, labels, value)
}

// timeout for the repository metrics: a scrape must answer even when Elasticsearch hangs.
const repositoryMetricsTimeout = 10 * time.Second
