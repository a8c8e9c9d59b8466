package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// A backup's note is what a sidecar learned about a backup that its snapshots do not show: part 2
// refused by Elasticsearch, or vanished from the repository after it started, a part never
// started, a DELETE that did not finish. It is a document of the jobs index, so that every
// replica, and a restarted one, reports the same. It is written only when something went wrong
// (a backup that completes costs no write), and read only for a backup that is INCOMPLETE (a GET
// of any other backup costs no read).

// backupNote is the note of one backup ("backup-note-{prefix}-{hash of the ID}").
type backupNote struct {
	BackupID string `json:"backupId"`
	// Snapshots are the names and UUIDs of the backup's snapshots the writer knew of: the note is
	// about the backup that still holds one of them, not a backup taken again under the same ID.
	Snapshots map[string]string `json:"snapshots"`
	// Part is the part the note is about (0: whichever is missing); What says what happened to
	// it, sentences ending with a full stop (they go into failureReason, after "missing part N
	// (name):").
	Part int    `json:"part"`
	What string `json:"what"`
	docStamp
}

// noteDocID is the ID of the backup's note: the ID hashed, as an ID may be longer than a
// document ID may be.
func (s *server) noteDocID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "backup-note-" + s.cfg.IndexPrefix + "-" + hex.EncodeToString(sum[:16])
}

// noteTimeout bounds the writing of a note: it may run while the sidecar stops, which it must
// not hold up for a whole Elasticsearch deadline.
const noteTimeout = 5 * time.Second

// noteBackup records what happened to one part of the backup that holds the snapshots known
// (at least one, with its UUID). It is not cancelled with ctx (the sidecar stopping is one of
// the things it records). A failure is logged, not returned: the backup's state is right
// without the note, only its reason is less precise.
func (s *server) noteBackup(ctx context.Context, id string, known []snapshot, part int, what string) {
	note := backupNote{BackupID: id, Snapshots: map[string]string{}, Part: part, What: what}
	for _, sn := range known {
		if sn.UUID != "" {
			note.Snapshots[sn.Name] = sn.UUID
		}
	}
	log := s.log.With("backup_id", id, "repository", s.cfg.Repository)
	if len(note.Snapshots) == 0 {
		log.Warn("cannot record what happened to the backup: none of its snapshots is known", "what", what)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), noteTimeout)
	defer cancel()
	if err := s.putDoc(ctx, s.noteDocID(id), &note, &note.docStamp); err != nil {
		log.Warn("cannot record what happened to the backup; GET reports it INCOMPLETE without saying why", "what", what, "err", err)
	}
}

// explainIncomplete replaces the reason of an INCOMPLETE backup by what its note says happened
// to the missing part, if a note of this very backup exists; a note that cannot be read leaves
// the reason the snapshots give.
func (s *server) explainIncomplete(ctx context.Context, info backupInfo, snaps []snapshot) backupInfo {
	var note backupNote
	_, found, err := s.loadDoc(ctx, s.noteDocID(info.BackupID), &note)
	switch {
	case err != nil:
		s.log.Warn("cannot read what happened to an INCOMPLETE backup; reporting it without", "backup_id", info.BackupID, "err", err)
		return info
	case !found || note.BackupID != info.BackupID || !note.about(snaps):
		return info
	}
	part, name := missingPart(info.BackupID, snaps)
	if note.Part != 0 && note.Part != part {
		return info // a note of the part that is there: the part missing is another story
	}
	info.FailureReason = ptr(incompleteReason(info.BackupID, part, name, note.What))
	return info
}

// about tells whether the note is of the backup that holds these snapshots (by UUID).
func (n backupNote) about(snaps []snapshot) bool {
	for _, sn := range snaps {
		if uuid, ok := n.Snapshots[sn.Name]; ok && uuid == sn.UUID {
			return true
		}
	}
	return false
}

// maxNotedFailures is how many failed shards a note names: enough to see the cause, short
// enough to read (a snapshot of many indices fails them all for the same reason).
const maxNotedFailures = 3

// shardFailures says what Elasticsearch reported about the failed shards of a snapshot, for a
// note; "" if it reported none.
func shardFailures(failures []snapshotFailure) string {
	var parts []string
	for _, f := range failures[:min(len(failures), maxNotedFailures)] {
		parts = append(parts, fmt.Sprintf("[%s][%d] %s", f.Index, f.ShardID, f.Reason))
	}
	if more := len(failures) - maxNotedFailures; more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", more))
	}
	return strings.Join(parts, ", ")
}

// noteTime formats a time for a note's sentence.
func noteTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
