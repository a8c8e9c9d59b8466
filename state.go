package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The states of a backup, as Optimize reports them on the wire.
const (
	stateCompleted    = "COMPLETED"
	stateInProgress   = "IN_PROGRESS"
	stateFailed       = "FAILED"
	stateIncompatible = "INCOMPATIBLE"
	stateIncomplete   = "INCOMPLETE"
)

// backupInfo is what the API reports about one backup.
type backupInfo struct {
	BackupID      string           `json:"backupId"`
	State         string           `json:"state"`
	FailureReason *string          `json:"failureReason"`
	Details       []snapshotDetail `json:"details"`

	// newest is the start of the backup's newest snapshot: the list's sort key.
	newest int64
}

// snapshotDetail is what the API reports about one snapshot of a backup.
type snapshotDetail struct {
	SnapshotName string     `json:"snapshotName"`
	State        string     `json:"state"`
	StartTime    *time.Time `json:"startTime"`
	EndTime      *time.Time `json:"endTime"`
	Failures     []string   `json:"failures"`
}

// partOf returns the part number a snapshot name declares, or 0 for a name not Optimize's.
func partOf(name string) int {
	_, _, part, _, _ := parseSnapshotName(name)
	return part
}

// backupState computes what the API reports for the backup with this ID from its snapshots (at
// least one). starting tells that this process is still going to start part 2; grace is how
// long after part 1 ended a missing part 2 still counts as being started (by any replica).
func backupState(id string, snaps []snapshot, starting bool, now time.Time, grace time.Duration) backupInfo {
	info := backupInfo{BackupID: id, Details: make([]snapshotDetail, 0, len(snaps))}
	// Part 1 first, then part 2 (Optimize starts both at once, so either can start first),
	// each oldest first. This runs for every backup listed: each name is parsed once, and
	// positions are sorted, on the stack, not copies of the snapshots.
	type numbered struct{ at, part int }
	var room [2 * partCount]numbered
	sorted := room[:0]
	for i, sn := range snaps {
		sorted = append(sorted, numbered{i, partOf(sn.Name)})
	}
	slices.SortStableFunc(sorted, func(a, b numbered) int {
		sa, sb := &snaps[a.at], &snaps[b.at]
		return cmp.Or(cmp.Compare(a.part, b.part), cmp.Compare(sa.StartMillis, sb.StartMillis), strings.Compare(sa.Name, sb.Name))
	})
	// The details' times point into one array: one allocation per backup, not two per snapshot.
	times := make([]time.Time, 0, 2*len(snaps))
	var success, incompatible, inProgress int
	var part1 *snapshot // the part 1 that started last
	var has1, has2 bool
	var failed []string
	for _, n := range sorted {
		s := &snaps[n.at]
		info.Details = append(info.Details, detailOf(*s, &times))
		switch s.State {
		case "SUCCESS":
			success++
		case "INCOMPATIBLE":
			incompatible++
		case "IN_PROGRESS":
			inProgress++
		}
		switch n.part {
		case 1:
			part1, has1 = s, true
		case 2:
			has2 = true
		}
		info.newest = max(info.newest, s.StartMillis)
		if s.State == "FAILED" || s.State == "PARTIAL" {
			failed = append(failed, failureOf(*s))
		}
	}
	switch {
	case len(snaps) == partCount && has1 && has2 && success == partCount:
		info.State = stateCompleted
	case len(failed) > 0:
		info.State = stateFailed
		info.FailureReason = ptr(strings.Join(failed, "; "))
	case incompatible > 0:
		info.State = stateIncompatible
	case inProgress > 0:
		info.State = stateInProgress
	case len(snaps) < partCount:
		info.State = stateIncomplete
		// Part 2 is started only after part 1 ended: until then a lone successful part 1 is a
		// backup in progress, not an incomplete one (Optimize's own API gets this wrong).
		if has1 && part1.State == "SUCCESS" && (starting || now.Sub(time.UnixMilli(part1.EndMillis)) < grace) {
			info.State = stateInProgress
			break
		}
		part, name := missingPart(id, snaps)
		info.FailureReason = ptr(incompleteReason(id, part, name, unrecorded(part)))
	default:
		info.State = stateFailed
		names := make([]string, len(sorted))
		for i, n := range sorted {
			names[i] = snaps[n.at].Name
		}
		info.FailureReason = ptr(fmt.Sprintf("Backup [%s] has %d snapshots but an Optimize backup has exactly %d parts: [%s]; delete the extra snapshots or the backup",
			id, len(snaps), partCount, strings.Join(names, ", ")))
	}
	return info
}

// missingPart is the lowest part number that none of the snapshots of an INCOMPLETE backup has,
// and the name that part's snapshot would have (the version tag of the parts that exist).
func missingPart(id string, snaps []snapshot) (int, string) {
	version := ""
	var have [partCount + 1]bool
	for _, sn := range snaps {
		_, v, part, _, _ := parseSnapshotName(sn.Name)
		version = cmp.Or(version, v)
		if part >= 1 && part <= partCount {
			have[part] = true
		}
	}
	part := 1
	for part < partCount && have[part] {
		part++
	}
	return part, snapshotName(id, version, part)
}

// incompleteReason is the failureReason of an INCOMPLETE backup: the part it lacks, what
// happened to that part, and what to do.
func incompleteReason(id string, part int, name, what string) string {
	return fmt.Sprintf("Backup [%s] is missing part %d of %d (%s): %s Delete the backup and take another.", id, part, partCount, name, what)
}

// unrecorded says what can have happened to a missing part when no sidecar recorded anything
// about it (see backupNote): what the snapshots alone tell.
func unrecorded(part int) string {
	if part == 1 {
		return "no sidecar recorded what happened to it; it was deleted from the repository outside the sidecar."
	}
	return "no sidecar recorded what happened to it; it was never started (the sidecar that started part 1 was stopped or restarted before part 1 ended) or it was deleted from the repository outside the sidecar."
}

// failureOf describes why a snapshot failed, for failureReason.
func failureOf(s snapshot) string {
	var shards []string
	for _, f := range s.Failures {
		shards = append(shards, fmt.Sprintf("[%s][%d] %s", f.Index, f.ShardID, f.Reason))
	}
	reason := cmp.Or(s.Reason, strings.Join(shards, ", "), "no reason given by Elasticsearch")
	return fmt.Sprintf("Snapshot [%s] is %s: %s", s.Name, s.State, reason)
}

// detailOf is the API's view of one snapshot; its times are appended to times (which has room
// for them, so that the pointers stay valid).
func detailOf(s snapshot, times *[]time.Time) snapshotDetail {
	d := snapshotDetail{SnapshotName: s.Name, State: s.State, Failures: []string{}}
	at := func(millis int64) *time.Time {
		*times = append(*times, time.UnixMilli(millis).UTC())
		return &(*times)[len(*times)-1]
	}
	if wireMillis(s.StartMillis) {
		d.StartTime = at(s.StartMillis)
	}
	if wireMillis(s.EndMillis) && s.State != "IN_PROGRESS" {
		d.EndTime = at(s.EndMillis)
	}
	for _, f := range s.Failures {
		d.Failures = append(d.Failures, fmt.Sprintf("index [%s] shard [%d] on node [%s]: %s (%s)", f.Index, f.ShardID, f.NodeID, f.Reason, f.Status))
	}
	return d
}

// maxWireMillis is the end of year 9999 in Unix milliseconds: RFC 3339 has four-digit years.
const maxWireMillis = 253402300799999

// wireMillis tells whether a snapshot time is one to report: set (Elasticsearch says 0 when it
// has none) and a date RFC 3339 can write (a later one would be a broken clock; null is said).
func wireMillis(millis int64) bool { return millis > 0 && millis <= maxWireMillis }

// ptr returns a pointer to a copy of v, for the optional fields of an answer.
func ptr[T any](v T) *T { return &v }
