package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// The jobs index holds each installation's restore job, drill and delete marks, so that every
// replica, and a restarted sidecar, sees the same ones (lease.go: how a job's are written).

// jobDoc is the stored restore job: what GET .../restore reports, plus the plan (the exact
// snapshots and indices that were checked) and the lease of the sidecar running it.
type jobDoc struct {
	restoreJob
	Repository string      `json:"repository"`
	Plan       restorePlan `json:"plan"`
	// Restored are the indices this job restored, with their UUIDs.
	Restored map[string]string `json:"restored,omitempty"`
	// Restoring are the indices of the job's last restore request, until recorded in Restored.
	Restoring []string `json:"restoring,omitempty"`
	// ProgressAt is when the job last made progress (a step begun, a shard or bytes restored),
	// in Unix milliseconds by its owner's clock: DELETE .../restore ends a job without it.
	ProgressAt int64 `json:"progressMillis"`
	// WriteBlocked tells that the indices to replace carry a write block set by this job.
	WriteBlocked bool `json:"writeBlocked"`
	leaseStamp
}

// clone is a deep copy of the job: a change made on it never touches the stored job.
func (d *jobDoc) clone() jobDoc {
	c := *d
	c.Snapshots = slices.Clone(d.Snapshots)
	c.Restored = maps.Clone(d.Restored)
	c.Restoring = slices.Clone(d.Restoring)
	c.Repairs = maps.Clone(d.Repairs)
	return c
}

// restorePlan is what a restore does, fixed when its checks passed.
type restorePlan struct {
	// Parts are the backup's snapshots in restore order, with their indices.
	Parts []planPart `json:"parts"`
	// Replace are the indices of this installation to delete once the safety backup holds them;
	// ReplaceUUIDs their index UUIDs when checked (an index of the same name created later is
	// another index); PreBlocked those that had a write block before the job (left as they are).
	Replace      []string          `json:"replace"`
	ReplaceUUIDs map[string]string `json:"replaceUuids"`
	PreBlocked   []string          `json:"preBlocked,omitempty"`
	// Version is the backup's version tag.
	Version string `json:"version"`
}

// planPart is one snapshot to restore.
type planPart struct {
	Snapshot string `json:"snapshot"`
	// UUID is the snapshot's UUID when checked: the same name taken again is another snapshot.
	UUID    string   `json:"uuid"`
	Indices []string `json:"indices"`
	// Shards is how many shards the snapshot holds: as many recovered primaries end its restore.
	Shards int `json:"shards"`
	// StartMillis is when the snapshot began, by the clock of the cluster that took it (see
	// jobRun.fromSnapshot).
	StartMillis int64 `json:"startMillis,omitempty"`
}

// jobVersion is a stored document's sequence number and primary term; zero: no document yet.
type jobVersion struct {
	SeqNo       int64 `json:"_seq_no"`
	PrimaryTerm int64 `json:"_primary_term"`
}

// jobDocID is the ID of this installation's restore job: one restore per installation.
func (s *server) jobDocID() string { return "restore-" + s.cfg.IndexPrefix }

// storedJob is the restore job document as read: the version a compare-and-set must find.
type storedJob struct {
	doc   jobDoc
	ver   jobVersion
	found bool
}

// pendingDeleteFor is how long a DELETE that did not confirm its end (its answer lost, or the
// delete queued behind a running snapshot) keeps its backup from being restored.
const pendingDeleteFor = time.Hour

// loadJob reads the stored restore job; found is false when none was ever stored.
func (s *server) loadJob(ctx context.Context) (stored storedJob, err error) {
	stored.ver, stored.found, err = s.loadDoc(ctx, s.jobDocID(), &stored.doc)
	return stored, err
}

// docStamp is what every document of the jobs index carries to be written safely.
type docStamp struct {
	// Heartbeat is when the document was last written, by the writer's clock.
	Heartbeat int64 `json:"heartbeatMillis"`
	// Rev is random per write, to tell whether a write whose answer got lost went through.
	Rev string `json:"rev"`
}

// loadDoc reads document id of the jobs index into target; found is false if there is none yet.
func (s *server) loadDoc(ctx context.Context, id string, target any) (v jobVersion, found bool, err error) {
	var answer struct {
		Found *bool `json:"found"`
		jobVersion
		Source json.RawMessage `json:"_source"`
	}
	err = s.read(ctx, esapi.GetRequest{Index: seg(s.cfg.JobsIndex), DocumentID: seg(id)}, &answer)
	var ee *esError
	switch {
	case errors.As(err, &ee) && (ee.Type == "index_not_found_exception" || docNotFound(ee)):
		return jobVersion{}, false, nil // no jobs index yet, or no such document
	case err != nil:
		return jobVersion{}, false, fmt.Errorf("read %s from %s: %w", id, s.cfg.JobsIndex, err)
	case answer.Found == nil:
		// Whatever answered is not Elasticsearch's document API: the document may exist, so
		// it must not be taken for none (a DELETE would then skip its check).
		return jobVersion{}, false, fmt.Errorf("read %s from %s: the answer has no \"found\" field", id, s.cfg.JobsIndex)
	case !*answer.Found:
		return jobVersion{}, false, nil
	}
	if err := json.Unmarshal(answer.Source, target); err != nil {
		return jobVersion{}, false, fmt.Errorf("decode %s from %s: %w", id, s.cfg.JobsIndex, err)
	}
	return answer.jobVersion, true, nil
}

// docNotFound tells whether Elasticsearch's 404 to a document read is its answer for a document
// that does not exist, {"found":false,...} (whatever its spacing), not an error.
func docNotFound(ee *esError) bool {
	var answer struct {
		Found *bool `json:"found"`
	}
	return ee.Status == http.StatusNotFound && json.Unmarshal([]byte(ee.Reason), &answer) == nil && answer.Found != nil && !*answer.Found
}

// saveDoc writes doc (stamped in stamp) as document id if the stored one is still at version v
// (zero: none), and returns the new version; a lost answer is resolved by reading back its Rev.
func (s *server) saveDoc(ctx context.Context, id string, doc any, stamp *docStamp, v jobVersion) (jobVersion, error) {
	stamp.Heartbeat, stamp.Rev = s.now().UnixMilli(), newNonce()
	body, err := json.Marshal(doc)
	if err != nil {
		return v, err
	}
	req := esapi.IndexRequest{Index: seg(s.cfg.JobsIndex), DocumentID: seg(id), Body: bytes.NewReader(body), Refresh: "false"}
	if v == (jobVersion{}) {
		req.OpType = "create"
	} else {
		req.IfSeqNo, req.IfPrimaryTerm = new(int(v.SeqNo)), new(int(v.PrimaryTerm))
	}
	var stored jobVersion
	err = s.write(ctx, req, &stored)
	var ee *esError
	switch {
	case err == nil:
		return stored, nil
	case errors.As(err, &ee) && ee.Status == http.StatusConflict:
		return v, errDocChanged
	case !answerLost(err):
		return v, fmt.Errorf("write %s to %s: %w", id, s.cfg.JobsIndex, err)
	}
	var back struct{ docStamp }
	nv, found, readErr := s.loadDoc(ctx, id, &back)
	if readErr != nil || !found || back.Rev != stamp.Rev {
		return v, fmt.Errorf("write %s to %s: the answer was lost and the write is not there (or could not be read back): %w", id, s.cfg.JobsIndex, err)
	}
	return nv, nil
}

// rewriteDoc stores what write makes of document id as read (into a new D) at the version read,
// creating the jobs index if need be; up to attempts times on a race with another writer.
func rewriteDoc[D any](ctx context.Context, s *server, id string, attempts int, write func(*D) (any, *docStamp)) error {
	for attempt := 1; ; attempt++ {
		var stored D
		v, found, err := s.loadDoc(ctx, id, &stored)
		if err != nil {
			return err
		}
		if !found {
			if err := s.ensureJobsIndex(ctx); err != nil {
				return err
			}
		}
		doc, stamp := write(&stored)
		_, err = s.saveDoc(ctx, id, doc, stamp, v)
		if !errors.Is(err, errDocChanged) || attempt == attempts {
			return err
		}
	}
}

// putDoc writes doc as document id over whatever is stored (last writer wins: records, not locks).
func (s *server) putDoc(ctx context.Context, id string, doc any, stamp *docStamp) error {
	return rewriteDoc(ctx, s, id, 2, func(*struct{ docStamp }) (any, *docStamp) { return doc, stamp })
}

// deleteMarks is the document of the backups a DELETE is removing ("deleting-{prefix}"): ID to
// when the DELETE began (see nothingElseStarted). A DELETE never writes a running restore's job
// document: that would cost it its lease.
type deleteMarks struct {
	Backups map[string]int64 `json:"backups"`
	docStamp
}

// marksDocID is the ID of this installation's delete marks.
func (s *server) marksDocID() string { return "deleting-" + s.cfg.IndexPrefix }

// loadMarks reads the delete marks.
func (s *server) loadMarks(ctx context.Context) (deleteMarks, jobVersion, error) {
	var m deleteMarks
	v, _, err := s.loadDoc(ctx, s.marksDocID(), &m)
	return m, v, err
}

// markedForDelete tells whether the backup has a delete mark younger than pendingDeleteFor.
func (s *server) markedForDelete(m deleteMarks, id string) bool {
	at, ok := m.Backups[id]
	return ok && s.now().Sub(time.UnixMilli(at)) < pendingDeleteFor
}

// changeMarks applies change to the delete marks (compare-and-set, retried on a race with
// another DELETE), dropping marks older than pendingDeleteFor.
func (s *server) changeMarks(ctx context.Context, change func(map[string]int64)) error {
	return rewriteDoc(ctx, s, s.marksDocID(), 5, func(m *deleteMarks) (any, *docStamp) {
		if m.Backups == nil {
			m.Backups = map[string]int64{}
		}
		maps.DeleteFunc(m.Backups, func(id string, _ int64) bool { return !s.markedForDelete(*m, id) })
		change(m.Backups)
		return m, &m.docStamp
	})
}

// ensureJobsIndex creates the jobs index if missing: one shard, a replica if there are two nodes.
func (s *server) ensureJobsIndex(ctx context.Context) error {
	body := strings.NewReader(`{"settings":{"number_of_shards":1,"auto_expand_replicas":"0-1","hidden":true}}`)
	err := s.write(ctx, esapi.IndicesCreateRequest{Index: seg(s.cfg.JobsIndex), Body: body}, nil)
	var ee *esError
	if err == nil || errors.As(err, &ee) && ee.Type == "resource_already_exists_exception" {
		return nil
	}
	return fmt.Errorf("create the restore jobs index %s: %w; it holds the restore job so that every replica sees it: let the sidecar's user create it, or create it and set OPTIMIZE_BACKUP_JOBS_INDEX", s.cfg.JobsIndex, err)
}

// active tells whether the job is pending or running.
func (j restoreJob) active() bool { return j.State == restorePending || j.State == restoreRunning }

// uses tells whether the active job restores the backup with this ID or has it as safety backup.
func (d jobDoc) uses(id string) bool {
	return d.active() && (d.BackupID == id || d.SafetyBackupID != nil && *d.SafetyBackupID == id)
}

// ownerID names this sidecar process in the jobs it runs.
func ownerID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), newNonce()[:8])
}
