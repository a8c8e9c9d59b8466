package main

import (
	"strings"
	"testing"
	"time"
)

// TestBackupState checks the state rules of docs/decisions.md on hand-made snapshot lists,
// including the grace period that keeps a backup between its parts IN_PROGRESS and the crash
// case where it must become INCOMPLETE, naming the part it lacks.
func TestBackupState(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ended := func(ago time.Duration) int64 { return now.Add(-ago).UnixMilli() }
	p1 := func(state string, endedAgo time.Duration) snapshot {
		return snapshot{Name: "camunda_optimize_7_3.9.0_part_1_of_2", State: state, StartMillis: ended(endedAgo + time.Second), EndMillis: ended(endedAgo)}
	}
	p2 := func(state string) snapshot {
		return snapshot{Name: "camunda_optimize_7_3.9.0_part_2_of_2", State: state, StartMillis: ended(time.Second), EndMillis: ended(0)}
	}
	for _, tc := range []struct {
		name     string
		snaps    []snapshot
		starting bool
		want     string
	}{
		{"both parts succeeded", []snapshot{p1("SUCCESS", time.Hour), p2("SUCCESS")}, false, stateCompleted},
		{"part 2 failed", []snapshot{p1("SUCCESS", time.Hour), p2("FAILED")}, false, stateFailed},
		{"part 1 partial", []snapshot{p1("PARTIAL", time.Hour)}, false, stateFailed},
		{"failure beats in progress", []snapshot{p1("FAILED", time.Hour), p2("IN_PROGRESS")}, false, stateFailed},
		{"incompatible", []snapshot{p1("SUCCESS", time.Hour), p2("INCOMPATIBLE")}, false, stateIncompatible},
		{"part 1 running", []snapshot{p1("IN_PROGRESS", 0)}, false, stateInProgress},
		{"part 2 running", []snapshot{p1("SUCCESS", time.Hour), p2("IN_PROGRESS")}, false, stateInProgress},
		{"between parts, this process starts part 2", []snapshot{p1("SUCCESS", time.Hour)}, true, stateInProgress},
		{"between parts, within grace (another replica)", []snapshot{p1("SUCCESS", time.Minute)}, false, stateInProgress},
		{"between parts, grace over (crashed)", []snapshot{p1("SUCCESS", 3*time.Minute)}, false, stateIncomplete},
		{"part 1 lost", []snapshot{p2("SUCCESS")}, false, stateIncomplete},
		{"three snapshots", []snapshot{p1("SUCCESS", time.Hour), p2("SUCCESS"), {Name: "camunda_optimize_7_3.8.0_part_2_of_2", State: "SUCCESS"}}, false, stateFailed},
		{"two part 1s", []snapshot{p1("SUCCESS", time.Hour), {Name: "camunda_optimize_7_3.8.0_part_1_of_2", State: "SUCCESS"}}, false, stateFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := backupState("7", tc.snaps, tc.starting, now, 2*time.Minute)
			if got.State != tc.want {
				t.Errorf("got %s; want %s", got.State, tc.want)
			}
			if (got.State == stateFailed || got.State == stateIncomplete) != (got.FailureReason != nil) {
				t.Errorf("got failureReason %v with state %s; want a reason exactly when FAILED or INCOMPLETE", got.FailureReason, got.State)
			}
			if got.State == stateIncomplete {
				missing := map[string]string{"camunda_optimize_7_3.9.0_part_1_of_2": "part 2 of 2 (camunda_optimize_7_3.9.0_part_2_of_2)", "camunda_optimize_7_3.9.0_part_2_of_2": "part 1 of 2 (camunda_optimize_7_3.9.0_part_1_of_2)"}[tc.snaps[0].Name]
				if !strings.Contains(derefString(got.FailureReason), "is missing "+missing) {
					t.Errorf("got failureReason %q; want it to name the missing %s", derefString(got.FailureReason), missing)
				}
			}
			if len(got.Details) != len(tc.snaps) {
				t.Errorf("got %d details; want %d", len(got.Details), len(tc.snaps))
			}
		})
	}
}

// TestBackupDetailsInPartOrder checks that details list part 1 before part 2 even when part 2
// started first, as it can for a backup Optimize made (it starts both parts at once).
func TestBackupDetailsInPartOrder(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	snaps := []snapshot{
		{Name: "camunda_optimize_7_3.9.0_part_1_of_2", State: "SUCCESS", StartMillis: now.UnixMilli() + 10, EndMillis: now.UnixMilli() + 20},
		{Name: "camunda_optimize_7_3.9.0_part_2_of_2", State: "SUCCESS", StartMillis: now.UnixMilli(), EndMillis: now.UnixMilli() + 20},
	}
	info := backupState("7", snaps, false, now, 0)
	if len(info.Details) != 2 || info.Details[0].SnapshotName != snaps[0].Name || info.Details[1].SnapshotName != snaps[1].Name {
		t.Errorf("got details %+v; want part 1, then part 2", info.Details)
	}
}
