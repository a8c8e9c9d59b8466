package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRetentionPlan checks which scheduled backups retention deletes: beyond keep, older than
// the maximum age, FAILED/INCOMPLETE older than the newest COMPLETED one; never the newest
// COMPLETED one, never a running one, nothing without a limit.
func TestRetentionPlan(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	backup := func(daysAgo int, state string) scheduledBackup {
		slot := now.Add(-time.Duration(daysAgo) * day)
		return scheduledBackup{backupInfo{BackupID: slotID(slot, "optimize"), State: state}, slot}
	}
	ids := func(ds []retentionDelete) []string {
		out := []string{}
		for _, d := range ds {
			out = append(out, d.BackupID)
		}
		return out
	}
	id := func(daysAgo int) string { return slotID(now.Add(-time.Duration(daysAgo)*day), "optimize") }
	// Newest first, as scheduledBackups returns them.
	repo := []scheduledBackup{
		backup(0, stateInProgress),
		backup(1, stateFailed), // newer than the newest COMPLETED: kept, it shows what went wrong
		backup(2, stateCompleted),
		backup(3, stateIncomplete),
		backup(4, stateCompleted),
		backup(5, stateCompleted),
		backup(40, stateCompleted),
		backup(41, stateFailed),
	}
	for _, tc := range []struct {
		name   string
		keep   int
		maxAge time.Duration
		repo   []scheduledBackup
		want   []string
	}{
		{name: "no limits: nothing", repo: repo, want: []string{}},
		{name: "keep 2", keep: 2, repo: repo, want: []string{id(3), id(5), id(40), id(41)}},
		{name: "max age 30 days", maxAge: 30 * day, repo: repo, want: []string{id(3), id(40), id(41)}},
		{name: "both: either deletes", keep: 3, maxAge: 30 * day, repo: repo, want: []string{id(3), id(40), id(41)}},
		{name: "keep 1", keep: 1, repo: repo, want: []string{id(3), id(4), id(5), id(40), id(41)}},
		{name: "the only COMPLETED one is kept however old", keep: 1, maxAge: day, repo: []scheduledBackup{backup(1, stateFailed), backup(40, stateCompleted), backup(41, stateIncomplete)}, want: []string{id(41)}},
		{name: "no COMPLETED one: nothing deleted", keep: 1, maxAge: day, repo: []scheduledBackup{backup(1, stateFailed), backup(40, stateIncomplete)}, want: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(retentionPlan(tc.repo, tc.keep, tc.maxAge, now))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("deleted IDs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestScheduleSlots checks the next slots in a time zone and which missed slot is taken at start.
func TestScheduleSlots(t *testing.T) {
	berlin, err := parseSchedule("0 2 * * *", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	next := berlin.nextSlots(now, 2)
	if want := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC); len(next) != 2 || !next[0].Equal(want) || next[1].Sub(next[0]) != 24*time.Hour {
		t.Errorf("got next slots %v; want %v and a day later (02:00 in Berlin is 01:00 UTC in winter)", next, want)
	}
	// The slot's Unix seconds 1795741200, times 1000, plus the prefix's number.
	opt, east := slotID(next[0], "optimize"), slotID(next[0], "optimize-east")
	if !strings.HasPrefix(opt, "1795741200") || len(opt) != 13 || opt == east {
		t.Errorf("got slot IDs %s (optimize) and %s (optimize-east); want 1795741200NNN, different per installation", opt, east)
	}
	if slot, ok := slotOf(opt, "optimize"); !ok || !slot.Equal(next[0]) {
		t.Errorf("got slot %v, %v of ID %s; want %v", slot, ok, opt, next[0])
	}
	for _, id := range []string{east, "1795741200", "01795741200" + opt[10:], "-" + opt, "x"} {
		if _, ok := slotOf(id, "optimize"); ok {
			t.Errorf("slotOf(%q) is a slot of optimize; want not (another installation's, or no slot ID)", id)
		}
	}
	for _, tc := range []struct {
		name, expr string
		now        time.Time
		want       time.Time // zero: none taken
	}{
		{"daily, 10 h after the slot: taken", "0 2 * * *", time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)},
		{"at the slot itself: taken", "0 2 * * *", time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC), time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)},
		{"weekdays, Monday 01:00: Friday's slot is older than a period", "0 2 * * 1-5", time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC), time.Time{}},
		{"weekdays, Friday 03:00: taken", "0 2 * * 1-5", time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)},
		{"every 15 minutes", "*/15 * * * *", time.Date(2026, 11, 26, 12, 7, 0, 0, time.UTC), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)},
		{"yearly", "@yearly", time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sched, err := parseSchedule(tc.expr, "UTC")
			if err != nil {
				t.Fatal(err)
			}
			got, ok := sched.missed(tc.now)
			if !ok {
				got = time.Time{}
			}
			if !got.Equal(tc.want) {
				t.Errorf("got missed slot %v (taken %v); want %v", got, ok, tc.want)
			}
		})
	}
}

// TestScheduleConfig checks that every schedule and retention problem names its variable.
func TestScheduleConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"not cron", map[string]string{"OPTIMIZE_BACKUP_SCHEDULE": "daily at 2", "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "r"}, []string{"OPTIMIZE_BACKUP_SCHEDULE: \"daily at 2\" is not a cron expression"}},
		{"time zone in the expression refused", map[string]string{"OPTIMIZE_BACKUP_SCHEDULE": "CRON_TZ=Asia/Tokyo 0 2 * * *", "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "r"}, []string{"set it in OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE"}},
		{"a bare time zone refused, no panic", map[string]string{"OPTIMIZE_BACKUP_SCHEDULE": "TZ=UTC", "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "r"}, []string{"set it in OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE"}},
		{"@every refused", map[string]string{"OPTIMIZE_BACKUP_SCHEDULE": "@every 1h", "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "r"}, []string{"replicas would disagree"}},
		{"bad zone", map[string]string{"OPTIMIZE_BACKUP_SCHEDULE": "0 2 * * *", "OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE": "Mars/Base", "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "r"}, []string{"OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE: \"Mars/Base\" is not a time zone"}},
		{"no repository", map[string]string{"OPTIMIZE_BACKUP_SCHEDULE": "0 2 * * *"}, []string{"set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME too"}},
		{"retention without schedule", map[string]string{"OPTIMIZE_BACKUP_RETENTION_KEEP": "3", "OPTIMIZE_BACKUP_VERIFY_SCHEDULED": "true"}, []string{"OPTIMIZE_BACKUP_RETENTION_KEEP: applies to scheduled backups only", "OPTIMIZE_BACKUP_VERIFY_SCHEDULED: applies to scheduled backups only"}},
		{"negative retention", map[string]string{"OPTIMIZE_BACKUP_SCHEDULE": "0 2 * * *", "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "r", "OPTIMIZE_BACKUP_RETENTION_KEEP": "-1", "OPTIMIZE_BACKUP_RETENTION_MAX_AGE": "-5h"}, []string{"OPTIMIZE_BACKUP_RETENTION_KEEP: -1 is negative", "OPTIMIZE_BACKUP_RETENTION_MAX_AGE: -5h0m0s is negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(mapEnv(tc.env))
			if err == nil {
				t.Fatalf("got no error; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q; want it to contain %q", err, w)
				}
			}
		})
	}
	cfg, err := loadConfig(mapEnv(map[string]string{"OPTIMIZE_BACKUP_SCHEDULE": "30 1 * * *", "OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE": "America/New_York", "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "r", "OPTIMIZE_BACKUP_RETENTION_KEEP": "7", "OPTIMIZE_BACKUP_RETENTION_MAX_AGE": "720h"}))
	if err != nil || cfg.RetentionKeep != 7 || cfg.RetentionMaxAge != 720*time.Hour {
		t.Errorf("got %+v, %v; want keep 7, max age 720h", cfg, err)
	}
}

// TestDrillRoom checks the disk rule of drills: refused when the copy would fill the data nodes
// beyond 85%, with the sizes in the answer.
func TestDrillRoom(t *testing.T) {
	const gib = int64(1) << 30
	for _, tc := range []struct {
		size, total, available int64
		refused                bool
	}{
		{size: 10 * gib, total: 100 * gib, available: 50 * gib, refused: false}, // 60% after
		{size: 10 * gib, total: 100 * gib, available: 20 * gib, refused: true},  // 90% after
		{size: 5 * gib, total: 100 * gib, available: 20 * gib, refused: false},  // exactly 85%
		{size: 1, total: 0, available: 0, refused: false},                       // no fs stats: not judged
	} {
		err := drillRoom(tc.size, tc.total, tc.available)
		if (err != nil) != tc.refused {
			t.Errorf("drillRoom(%d, %d, %d): got %v; want refused %v", tc.size, tc.total, tc.available, err, tc.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "20480 MiB free of 102400 MiB") {
			t.Errorf("got %q; want the free and total sizes in the message", err)
		}
	}
}
