package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestFailedIndices: which restored indices Elasticsearch will not recover by itself. An index
// being restored, or recovering from its store, is slow, not failed; a primary unassigned after
// a failed allocation, or with no restore to fill it, is failed; an index the caller did not
// create (another UUID) is never the caller's to repair.
func TestFailedIndices(t *testing.T) {
	failed := []unassignedInfo{{Reason: "ALLOCATION_FAILED", AllocationStatus: "deciders_no", FailedAttempts: 5, Details: "failed shard on node [n]: failed recovery\n\tat x\nCaused by: java.nio.file.NoSuchFileException: translog.ckp\n\tat y"}}
	retried := []unassignedInfo{{Reason: "ALLOCATION_FAILED", AllocationStatus: "throttled", FailedAttempts: 1}}
	for _, tc := range []struct {
		name   string
		health map[string]indexHealth
		owned  map[string]string
		want   string // the failed index, "" for none
	}{
		{"restoring", map[string]indexHealth{"a": {UUID: "u", Restoring: true, Unassigned: []unassignedInfo{{Reason: "NEW_INDEX_RESTORED"}}}}, map[string]string{"a": "u"}, ""},
		{"initializing from its store", map[string]indexHealth{"a": {UUID: "u"}}, map[string]string{"a": "u"}, ""},
		{"allocation failed", map[string]indexHealth{"a": {UUID: "u", Unassigned: failed}}, map[string]string{"a": "u"}, "a"},
		{"allocation failed while restoring", map[string]indexHealth{"a": {UUID: "u", Restoring: true, Unassigned: failed}}, map[string]string{"a": "u"}, "a"},
		{"allocation failed once, Elasticsearch retries", map[string]indexHealth{"a": {UUID: "u", Unassigned: retried}}, map[string]string{"a": "u"}, ""},
		{"unassigned, not yet allocated after a restart", map[string]indexHealth{"a": {UUID: "u", Unassigned: []unassignedInfo{{Reason: "CLUSTER_RECOVERED"}}}}, map[string]string{"a": "u"}, ""},
		{"no node holds a copy for minutes (a crash cut it off)", map[string]indexHealth{"a": {UUID: "u", Unassigned: []unassignedInfo{{Reason: "CLUSTER_RECOVERED", AllocationStatus: "no_valid_shard_copy", At: time.Now().Add(-3 * time.Minute), InSync: 1}}}}, map[string]string{"a": "u"}, "a"},
		{"no node holds a copy for a moment (its node is restarting)", map[string]indexHealth{"a": {UUID: "u", Unassigned: []unassignedInfo{{Reason: "NODE_LEFT", AllocationStatus: "no_valid_shard_copy", At: time.Now().Add(-time.Minute), InSync: 1}}}}, map[string]string{"a": "u"}, ""},
		{"no node holds a copy, just after a restart", map[string]indexHealth{"a": {UUID: "u", Unassigned: []unassignedInfo{{Reason: "CLUSTER_RECOVERED", AllocationStatus: "no_valid_shard_copy", At: time.Now(), InSync: 1}}}}, map[string]string{"a": "u"}, ""},
		{"never started, its restore still running", map[string]indexHealth{"a": {UUID: "u", Restoring: true, Unassigned: []unassignedInfo{{Reason: "NEW_INDEX_RESTORED", AllocationStatus: "deciders_no", At: time.Now()}}}}, map[string]string{"a": "u"}, ""},
		{"no valid copy after a failed allocation", map[string]indexHealth{"a": {UUID: "u", Unassigned: []unassignedInfo{{Reason: "ALLOCATION_FAILED", AllocationStatus: "no_valid_shard_copy", At: time.Now()}}}}, map[string]string{"a": "u"}, "a"},
		{"gone", map[string]indexHealth{}, map[string]string{"a": "u"}, "a"},
		{"another index of the name", map[string]indexHealth{"a": {UUID: "other", Unassigned: failed}}, map[string]string{"a": "u"}, ""},
		{"not restored by the caller", map[string]indexHealth{"a": {UUID: "u", Unassigned: failed}}, map[string]string{}, ""},
		{"all the caller's (a drill)", map[string]indexHealth{"a": {UUID: "u", Unassigned: failed}}, nil, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := failedIndices([]string{"a"}, tc.health, tc.owned, time.Now(), 2*time.Minute)
			var got *shardFailure
			if errors.As(err, &got) != (tc.want != "") || got != nil && got.failed[0].Index != tc.want {
				t.Errorf("got %v; want failed %q", err, tc.want)
			}
		})
	}
	var failure *shardFailure
	errors.As(failedIndices([]string{"a", "b", "c"}, map[string]indexHealth{"a": {UUID: "u", Unassigned: failed}, "b": {UUID: "v", Restoring: true}}, nil, time.Now(), 2*time.Minute), &failure)
	if len(failure.failed) != 2 || failure.failed[1].Index != "c" || !strings.Contains(failure.failed[1].Reason, "never created it") {
		t.Errorf("got failed %+v; want a and c (never created, a drill's), not b (restoring)", failure.failed)
	}
	f := failure.failed[0]
	if !strings.Contains(f.Reason, "ALLOCATION_FAILED") || !strings.Contains(f.Reason, "NoSuchFileException: translog.ckp") || strings.Contains(f.Reason, "\tat") {
		t.Errorf("got reason %q; want Elasticsearch's reason and root cause, without the stack trace", f.Reason)
	}
}

// TestWaitUntilStall: a wait whose progress does not change ends after the stall timeout,
// saying so, long before the wait deadline; progress that changes keeps it going.
func TestWaitUntilStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &server{cfg: config{RestoreWaitTimeout: 6 * time.Hour, PollInterval: time.Second}}
		log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
		began := time.Now()
		err := s.waitUntil(context.Background(), log, newStallWatch("the test's work", 10*time.Minute), func() (bool, string, error) {
			return false, "stuck at 1 of 3 shards", nil
		})
		if took := time.Since(began); err == nil || !strings.Contains(err.Error(), "OPTIMIZE_BACKUP_RESTORE_STALL_TIMEOUT") || took > 11*time.Minute {
			t.Errorf("a stalled wait: got %v after %v; want the stall named after about 10m", err, took)
		}
		n := 0
		err = s.waitUntil(context.Background(), log, newStallWatch("the test's work", 10*time.Minute), func() (bool, string, error) {
			n++
			return n == 2000, strings.Repeat(".", n), nil // progress every read, done after ~33 minutes
		})
		if err != nil {
			t.Errorf("a wait that progresses: got %v; want it to end done", err)
		}
		err = s.waitUntil(context.Background(), log, newStallWatch("the test's work", 0), func() (bool, string, error) { return false, "", errors.New("boom") })
		if err == nil || err.Error() != "boom" {
			t.Errorf("a failing poll: got %v; want its error", err)
		}
	})
}
