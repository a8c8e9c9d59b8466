package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// A restore drill proves that a backup restores, without touching the installation: it
// restores the backup's snapshots into temporary indices outside every Optimize prefix
// (drillIndexPrefix), checks every shard, every index, a search on each and the metadata's
// schemaVersion, and deletes the temporary indices again, also when it fails or its sidecar
// stops. One drill runs per installation at a time; its document in the jobs index
// ("drill-{prefix}") is the lock, the progress every replica reports, and what a replica
// cleans up after when the sidecar running it went silent. Each finished drill is also kept per
// backup ("drill-result-{prefix}-{hash of the ID}"), for the backup's details.

// The states of a drill.
const (
	drillRunning = "RUNNING"
	drillPassed  = "PASSED"
	drillFailed  = "FAILED"
)

// drillKey is the registry key of the drill this process runs.
const drillKey = "drill"

// drillResult is what GET .../verify reports, and the backup's details show.
type drillResult struct {
	BackupID      string          `json:"backupId"`
	State         string          `json:"state"`
	Step          string          `json:"step"`
	StartTime     *time.Time      `json:"startTime"`
	EndTime       *time.Time      `json:"endTime"`
	FailureReason *string         `json:"failureReason"`
	Version       string          `json:"version"`
	SchemaVersion string          `json:"schemaVersion,omitempty"`
	Snapshots     []drillSnapshot `json:"snapshots"`
	Indices       []drillIndex    `json:"indices"`
	// TemporaryIndicesLeft are temporary indices the drill could not delete (see the log).
	TemporaryIndicesLeft []string `json:"temporaryIndicesLeft,omitempty"`
}

// drillSnapshot is one snapshot of the drilled backup and how its restore went.
type drillSnapshot struct {
	Snapshot       string `json:"snapshot"`
	UUID           string `json:"uuid"`
	ShardsTotal    int    `json:"shardsTotal"`
	ShardsRestored int    `json:"shardsRestored"`
	ShardsFailed   int    `json:"shardsFailed"`
}

// drillIndex is one index of the backup, the temporary index it was restored to, and how many
// documents a search of it counted.
type drillIndex struct {
	Snapshot       string `json:"snapshot"`
	Index          string `json:"index"`
	TemporaryIndex string `json:"temporaryIndex"`
	Documents      *int64 `json:"documents"`
}

// drillDoc is the stored drill: the result plus the lease of the sidecar running it.
type drillDoc struct {
	drillResult
	Repository string `json:"repository"`
	Owner      string `json:"owner"`
	// Previous is how the drill before this one ended.
	Previous *drillOutcome `json:"previous,omitempty"`
	docStamp
}

// drillDocID is the ID of this installation's drill document.
func (s *server) drillDocID() string { return "drill-" + s.cfg.IndexPrefix }

// drillResultDocID is the ID of the last finished drill of one backup: a hash, since backup
// IDs may be longer than a document ID may be.
func (s *server) drillResultDocID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "drill-result-" + s.cfg.IndexPrefix + "-" + hex.EncodeToString(sum[:16])
}

// drillIndexPrefix starts the name of every temporary index of this installation's drills:
// "backup-drill-" and a hash of the prefix, so two installations' drills never meet, and never
// a name starting with "{prefix}-" (for the prefix "backup", "drill-" starts them instead).
func (s *server) drillIndexPrefix() string {
	sum := sha256.Sum256([]byte(s.cfg.IndexPrefix))
	tag := hex.EncodeToString(sum[:4])
	if p := "backup-drill-" + tag + "-"; !strings.HasPrefix(p, s.cfg.IndexPrefix+"-") {
		return p
	}
	return "drill-" + tag + "-"
}

// maxIndexNameBytes is the longest index name Elasticsearch accepts.
const maxIndexNameBytes = 255

// handleVerify starts a drill of one backup (admin only) and answers 202 with its document.
func (s *server) handleVerify(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	// The drill's lock and cleanup must not depend on the caller staying.
	doc, err := s.startDrill(context.WithoutCancel(r.Context()), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("drill started", "backup_id", id, "repository", s.cfg.Repository)
	writeJSON(w, http.StatusAccepted, doc.drillResult)
}

// handleVerifyStatus reports the running or last drill of one backup, from Elasticsearch.
func (s *server) handleVerifyStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.checkStatusRequest(id); err != nil {
		s.writeError(w, r, err)
		return
	}
	var doc drillDoc
	_, found, err := s.loadDoc(r.Context(), s.drillDocID(), &doc)
	if err == nil && (!found || doc.BackupID != id) {
		_, found, err = s.loadDoc(r.Context(), s.drillResultDocID(id), &doc)
		found = found && doc.BackupID == id
	}
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case !found:
		s.writeError(w, r, notFound("No drill of backup [%s] is running or recorded in Elasticsearch; start one with POST .../%s/verify.", id, id))
	default:
		writeJSON(w, http.StatusOK, doc.drillResult)
	}
}

// startDrill checks that the backup can be drilled now, takes the installation's drill
// document (refused while another drill or a restore runs), and starts the drill in the
// background.
func (s *server) startDrill(ctx context.Context, id string) (drillDoc, error) {
	info, snaps, err := s.backupAndSnapshots(ctx, id)
	if err != nil {
		return drillDoc{}, err
	}
	if info.State == stateInProgress {
		return drillDoc{}, conflict("Backup [%s] is IN_PROGRESS; verify it once GET .../%s reports COMPLETED.", id, id)
	}
	own, err := s.ownSnapshots(id, snaps)
	if err != nil {
		return drillDoc{}, err
	}
	if !s.drills.claim(drillKey) {
		if s.drills.stopping() {
			return drillDoc{}, errStopping
		}
		return drillDoc{}, conflict("This sidecar is still running or finishing a drill (its backup is in the log); one drill runs at a time: start this one when it has ended.")
	}
	started := false
	defer func() {
		if !started {
			s.drills.release(drillKey)
		}
	}()

	var stored drillDoc
	ver, found, err := s.loadDoc(ctx, s.drillDocID(), &stored)
	if err != nil {
		return drillDoc{}, err
	}
	if found && stored.State == drillRunning {
		// Taken over only by watchDrills, which judges silence by its own clock: another
		// sidecar's clock says nothing here.
		return drillDoc{}, conflict("The drill of backup [%s] is running (step %s); one drill runs at a time: wait until GET .../%s/verify reports PASSED or FAILED (a drill whose sidecar stopped is ended by a running sidecar within %v).", stored.BackupID, stored.Step, stored.BackupID, s.staleAfter()+heartbeatEvery)
	}
	if err := s.noRestoreRunning(ctx); err != nil {
		return drillDoc{}, err
	}
	if err := s.roomForDrill(ctx, own); err != nil {
		return drillDoc{}, err
	}

	now := s.now().UTC()
	doc := drillDoc{Repository: s.cfg.Repository, Owner: s.owner, Previous: stored.Previous}
	if found && stored.State != drillRunning && stored.EndTime != nil {
		doc.Previous = &drillOutcome{BackupID: stored.BackupID, State: stored.State, EndTime: *stored.EndTime}
	}
	doc.drillResult = drillResult{BackupID: id, State: drillRunning, Step: "start", StartTime: &now, Version: versionOf(own), Snapshots: []drillSnapshot{}, Indices: []drillIndex{}}
	// In part order (info.Details), as a restore restores them.
	for _, detail := range info.Details {
		i := slices.IndexFunc(snaps, func(sn snapshot) bool { return sn.Name == detail.SnapshotName })
		if i < 0 || !slices.Contains(own, detail.SnapshotName) {
			continue
		}
		sn := snaps[i]
		doc.Snapshots = append(doc.Snapshots, drillSnapshot{Snapshot: sn.Name, UUID: sn.UUID, ShardsTotal: sn.Shards.Total})
		for _, ix := range sn.Indices {
			doc.Indices = append(doc.Indices, drillIndex{Snapshot: sn.Name, Index: ix, TemporaryIndex: s.drillIndexPrefix() + ix})
		}
	}
	if !found {
		if err := s.ensureJobsIndex(ctx); err != nil {
			return drillDoc{}, err
		}
	}
	sent := time.Now()
	ver, err = s.saveDoc(ctx, s.drillDocID(), &doc, &doc.docStamp, ver)
	if errors.Is(err, errJobChanged) {
		return drillDoc{}, conflict("Another replica started a drill at the same moment; one drill runs at a time: see GET .../verify of its backup.")
	}
	if err != nil {
		return drillDoc{}, err
	}
	run := &drillRun{s: s, doc: doc, ver: ver, info: info, leased: sent}
	// A restore takes its job, then reads the drill; a drill takes its document, then reads the
	// job and the delete marks: one of the two always sees the other.
	if err := s.noRestoreRunning(ctx); err != nil {
		run.undo(ctx, stored)
		return drillDoc{}, err
	}
	if marks, _, err := s.loadMarks(ctx); err != nil || s.markedForDelete(marks, id) {
		if err == nil {
			err = conflict("Backup [%s] is being deleted; there is nothing to verify.", id)
		}
		run.undo(ctx, stored)
		return drillDoc{}, err
	}
	started = true
	if !s.drills.start(drillKey, run.run) {
		run.undo(ctx, stored)
		return drillDoc{}, errStopping
	}
	s.drillsSeen.Store(true)
	return run.current(), nil
}

// undo puts back the drill document a drill replaced, for a drill refused after it took the
// document and before it did anything: a drill that never ran is no verification result.
func (d *drillRun) undo(ctx context.Context, previous drillDoc) {
	if err := d.update(ctx, func(doc *drillDoc) { *doc = previous }); err != nil {
		d.s.log.Warn("drill: cannot put back the drill document of a refused drill; it is ended as abandoned later", "backup_id", d.doc.BackupID, "err", err)
	}
}

// drillOutcome is how a finished drill ended, kept while the next drill runs (for the metrics).
type drillOutcome struct {
	BackupID string    `json:"backupId"`
	State    string    `json:"state"`
	EndTime  time.Time `json:"endTime"`
}

// snapshotStatus is what roomForDrill reads of the snapshot status API.
type snapshotStatus struct {
	Snapshots []struct {
		Stats struct {
			Total struct {
				Size int64 `json:"size_in_bytes"`
			} `json:"total"`
		} `json:"stats"`
	} `json:"snapshots"`
}

// drillDiskLimit is the share of the data nodes' disk a drill may fill: Elasticsearch's default
// low watermark, above which it allocates no new shard (the drill's restore would wait) and
// nearer to the flood stage, which makes every index read-only, Optimize's too.
const drillDiskLimit = 0.85

// roomForDrill refuses (409) a drill whose copy of the backup would fill the data nodes' disks
// beyond drillDiskLimit.
func (s *server) roomForDrill(ctx context.Context, snapshots []string) error {
	var status snapshotStatus
	req := esapi.SnapshotStatusRequest{Repository: seg(s.cfg.Repository), Snapshot: segs(snapshots), FilterPath: []string{"snapshots.stats.total.size_in_bytes"}}
	if err := s.read(ctx, req, &status); err != nil {
		return fmt.Errorf("read the size of the backup's snapshots: %w", err)
	}
	var size int64
	for _, sn := range status.Snapshots {
		size += sn.Stats.Total.Size
	}
	var nodes struct {
		Nodes map[string]struct {
			FS struct {
				Total struct {
					Total     int64 `json:"total_in_bytes"`
					Available int64 `json:"available_in_bytes"`
				} `json:"total"`
			} `json:"fs"`
		} `json:"nodes"`
	}
	nreq := esapi.NodesStatsRequest{NodeID: []string{"data:true"}, Metric: []string{"fs"}, FilterPath: []string{"nodes.*.fs.total.total_in_bytes", "nodes.*.fs.total.available_in_bytes"}}
	if err := s.read(ctx, nreq, &nodes); err != nil {
		return fmt.Errorf("read the data nodes' free disk: %w", err)
	}
	var total, available int64
	for _, n := range nodes.Nodes {
		total += n.FS.Total.Total
		available += n.FS.Total.Available
	}
	return drillRoom(size, total, available)
}

// drillRoom refuses (409) a drill of size bytes on data nodes with total bytes of disk of which
// available are free, when it would fill them beyond drillDiskLimit. It is a pure function.
func drillRoom(size, total, available int64) error {
	if total > 0 && float64(total-available+size) > drillDiskLimit*float64(total) {
		return conflict("A drill would restore %d MiB next to the live indices, but the data nodes have %d MiB free of %d MiB: that would fill them beyond %.0f%% (Elasticsearch's low disk watermark). Free disk, or verify this backup on another cluster.",
			size>>20, available>>20, total>>20, drillDiskLimit*100)
	}
	return nil
}

// noRestoreRunning refuses (409) while a restore of this installation is pending or running.
func (s *server) noRestoreRunning(ctx context.Context) error {
	job, _, found, err := s.loadJob(ctx)
	if err != nil {
		return err
	}
	if found && job.active() {
		return conflict("The restore of backup [%s] is %s (step %s); a drill waits until GET .../%s/restore reports COMPLETED or FAILED.", job.BackupID, job.State, job.Step, job.BackupID)
	}
	return nil
}

// drillUsing returns the running drill of the backup with this ID, if there is one: a DELETE
// or retention leaves that backup alone.
func (s *server) drillUsing(ctx context.Context, id string) error {
	var doc drillDoc
	_, found, err := s.loadDoc(ctx, s.drillDocID(), &doc)
	if err != nil {
		return err
	}
	if found && doc.State == drillRunning && doc.BackupID == id {
		return conflict("Backup [%s] cannot be deleted: a drill restores it (step %s); wait until GET .../%s/verify reports PASSED or FAILED.", id, doc.Step, id)
	}
	return nil
}

// versionOf is the version tag in the first of these snapshot names.
func versionOf(names []string) string {
	for _, n := range names {
		if _, v, _, _, ok := parseSnapshotName(n); ok {
			return v
		}
	}
	return ""
}

// drillRun is one drill this process runs: its document (changed on a copy, written with
// compare-and-set, so a replica that abandoned it makes this process stop).
type drillRun struct {
	s    *server
	info backupInfo
	mu   sync.Mutex // guards doc, ver and leased
	doc  drillDoc
	ver  jobVersion
	// leased is when the last stored write had been sent: the lease holds from then.
	leased time.Time
	// lost ends the drill's steps when another sidecar took the drill over.
	lost context.CancelFunc
}

// guard fails once the lease is too old to act on (as jobRun.guard): a watcher takes a drill
// over after staleAfter without a change, and a delete started now must not overlap the new
// owner's drill.
func (d *drillRun) guard() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.leased) > d.s.staleAfter()-d.s.cfg.ESTimeout-heartbeatEvery {
		return errDrillLeaseStale
	}
	return nil
}

// errDrillLeaseStale stops a drill whose lease was not renewed in time (Elasticsearch slow):
// it ends through finish, whose compare-and-set decides whether it still holds the drill.
var errDrillLeaseStale = errors.New("the drill's lease was not renewed in time (Elasticsearch too slow to answer)")

// current is a copy of the drill's document.
func (d *drillRun) current() drillDoc {
	d.mu.Lock()
	defer d.mu.Unlock()
	doc := d.doc
	doc.Snapshots = slices.Clone(doc.Snapshots)
	doc.Indices = slices.Clone(doc.Indices)
	return doc
}

// update applies change to a copy of the document and stores it (compare-and-set); on success
// the copy becomes the document. A conflict means another sidecar took the drill over:
// errLeaseLost, and the drill's steps end. Writes are not cancelled with the drill, so that the
// version this sidecar holds is never left behind a write that went through.
func (d *drillRun) update(ctx context.Context, change func(*drillDoc)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := d.doc
	next.Snapshots = slices.Clone(next.Snapshots)
	next.Indices = slices.Clone(next.Indices)
	change(&next)
	sent := time.Now()
	ver, err := d.s.saveDoc(context.WithoutCancel(ctx), d.s.drillDocID(), &next, &next.docStamp, d.ver)
	if errors.Is(err, errJobChanged) {
		if d.lost != nil {
			d.lost()
		}
		return errLeaseLost
	}
	if err != nil {
		return err
	}
	d.doc, d.ver, d.leased = next, ver, sent
	return nil
}

// run is the drill: every step, then the cleanup, whatever happened. The lease is renewed
// meanwhile, so that no replica takes the drill for abandoned while a long restore runs.
func (d *drillRun) run(ctx context.Context) {
	stepsCtx, cancelSteps := context.WithCancel(ctx)
	defer cancelSteps()
	var lost atomic.Bool
	d.mu.Lock()
	d.lost = func() { lost.Store(true); cancelSteps() }
	d.mu.Unlock()
	backupID := d.current().BackupID
	stopLease := make(chan struct{})
	leaseDone := make(chan struct{})
	go func() {
		defer close(leaseDone)
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-stopLease:
				return
			case <-t.C:
			}
			if err := d.update(ctx, func(*drillDoc) {}); err != nil && !errors.Is(err, errLeaseLost) {
				d.s.log.Warn("drill: cannot renew its lease; will retry", "backup_id", backupID, "err", err)
			}
		}
	}()
	err := d.steps(stepsCtx)
	close(stopLease) // not a cancel: a renewal in flight completes, and its version is kept
	<-leaseDone
	if lost.Load() || errors.Is(err, errLeaseLost) {
		// Another sidecar took the drill over (this one was silent too long): it cleans up. This
		// one deletes nothing, since a new drill may already be running.
		d.s.log.Warn("drill: another sidecar took it over; this one stops without cleaning up", "backup_id", backupID)
		return
	}
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("the sidecar stopped during the drill (%w)", err)
	}
	// The cleanup and the result must be written also when the sidecar is stopping.
	finishCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*d.s.cfg.ESTimeout)
	defer cancel()
	d.finish(finishCtx, err)
}

// step records the step the drill is at.
func (d *drillRun) step(ctx context.Context, name string) error {
	return d.update(ctx, func(doc *drillDoc) { doc.Step = name })
}

// steps restores each snapshot into temporary indices and checks them.
func (d *drillRun) steps(ctx context.Context) error {
	s := d.s
	if d.info.State != stateCompleted {
		reason := ""
		if d.info.FailureReason != nil {
			reason = ": " + *d.info.FailureReason
		}
		return fmt.Errorf("the backup is %s%s; only a COMPLETED backup can be restored", d.info.State, reason)
	}
	if len(d.current().Snapshots) != partCount {
		return fmt.Errorf("the backup has %d snapshots of this installation, not %d", len(d.current().Snapshots), partCount)
	}
	for _, ix := range d.current().Indices {
		if len(ix.TemporaryIndex) > maxIndexNameBytes {
			return fmt.Errorf("the temporary name of index %s would be longer than Elasticsearch's %d bytes; this backup cannot be drilled", ix.Index, maxIndexNameBytes)
		}
	}
	// A restore refuses a backup that holds another installation's indices: so does the drill,
	// or it would pass a backup that cannot be restored.
	in, _, _, err := s.installationIndices(ctx)
	if err != nil {
		return err
	}
	var all []string
	for _, ix := range d.current().Indices {
		all = append(all, ix.Index)
	}
	if foreign := s.foreignIndices(in, all); len(foreign) > 0 {
		return fmt.Errorf("the backup holds indices that are not this installation's (prefix [%s]): [%s]; a restore refuses it", s.cfg.IndexPrefix, strings.Join(foreign, ", "))
	}
	if err := d.step(ctx, "clean-up-before"); err != nil {
		return err
	}
	if err := s.deleteDrillIndices(ctx, d.temporaryNames(), d.guard); err != nil {
		return err
	}
	for i, sn := range d.current().Snapshots {
		if err := d.step(ctx, fmt.Sprintf("restore-part-%d", i+1)); err != nil {
			return err
		}
		shards, err := s.drillRestore(ctx, sn.Snapshot, d.indicesOf(sn.Snapshot), sn.ShardsTotal)
		if err != nil {
			return err
		}
		if err := d.update(ctx, func(doc *drillDoc) {
			doc.Snapshots[i].ShardsRestored, doc.Snapshots[i].ShardsFailed = shards.Successful, shards.Failed
		}); err != nil {
			return err
		}
		if shards.Failed > 0 || shards.Successful < sn.ShardsTotal {
			return fmt.Errorf("%d of the %d shards of snapshot %s could not be restored (damaged or missing files in the repository?); see Elasticsearch's log and GET _cluster/allocation/explain", sn.ShardsTotal-shards.Successful, sn.ShardsTotal, sn.Snapshot)
		}
	}
	if err := d.step(ctx, "check-indices"); err != nil {
		return err
	}
	existing, err := s.existingIndices(ctx, d.temporaryNames())
	if err != nil {
		return err
	}
	for _, ix := range d.current().Indices {
		if !slices.Contains(existing, ix.TemporaryIndex) {
			return fmt.Errorf("index %s of the backup was not restored (no %s after the restore)", ix.Index, ix.TemporaryIndex)
		}
	}
	if err := d.step(ctx, "search"); err != nil {
		return err
	}
	for i, ix := range d.current().Indices {
		count, err := s.countDocuments(ctx, ix.TemporaryIndex)
		if err != nil {
			return fmt.Errorf("the restored index %s (%s) answers no search: %w", ix.Index, ix.TemporaryIndex, err)
		}
		if err := d.update(ctx, func(doc *drillDoc) { doc.Indices[i].Documents = &count }); err != nil {
			return err
		}
	}
	if err := d.step(ctx, "check-schema-version"); err != nil {
		return err
	}
	return d.checkSchemaVersion(ctx)
}

// temporaryNames are the names of the drill's temporary indices.
func (d *drillRun) temporaryNames() []string {
	var out []string
	for _, ix := range d.current().Indices {
		out = append(out, ix.TemporaryIndex)
	}
	return out
}

// indicesOf are the indices of one snapshot of the backup, as read when the drill started.
func (d *drillRun) indicesOf(snapshot string) []string {
	var out []string
	for _, ix := range d.current().Indices {
		if ix.Snapshot == snapshot {
			out = append(out, ix.Index)
		}
	}
	return out
}

// metadataIndexPattern matches Optimize's metadata index of this prefix: {prefix}-metadata_vN.
func metadataIndexPattern(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-metadata_v\d+$`)
}

// checkSchemaVersion compares the schemaVersion in the restored metadata index with the
// backup's version tag.
func (d *drillRun) checkSchemaVersion(ctx context.Context) error {
	doc := d.current()
	pattern := metadataIndexPattern(d.s.cfg.IndexPrefix)
	for _, ix := range doc.Indices {
		if !pattern.MatchString(ix.Index) {
			continue
		}
		var answer struct {
			Source struct {
				SchemaVersion string `json:"schemaVersion"`
			} `json:"_source"`
		}
		if err := d.s.read(ctx, esapi.GetRequest{Index: seg(ix.TemporaryIndex), DocumentID: "1"}, &answer); err != nil {
			return fmt.Errorf("read the schemaVersion from the restored metadata index %s (%s): %w", ix.Index, ix.TemporaryIndex, err)
		}
		got := answer.Source.SchemaVersion
		if err := d.update(ctx, func(doc *drillDoc) { doc.SchemaVersion = got }); err != nil {
			return err
		}
		if versionPattern.FindString(got) != doc.Version {
			return fmt.Errorf("the restored metadata index %s says schemaVersion %q, but the backup's snapshots are tagged %s: the backup does not hold what its name says", ix.Index, got, doc.Version)
		}
		return nil
	}
	return fmt.Errorf("the backup holds no metadata index (%s-metadata_v*), so its schemaVersion cannot be checked", d.s.cfg.IndexPrefix)
}

// finish deletes the temporary indices and records the result: PASSED when err is nil.
func (d *drillRun) finish(ctx context.Context, err error) {
	s := d.s
	// Hold the document before deleting anything: a sidecar that lost the drill to another
	// (which may have started a new drill with the same temporary names) deletes nothing.
	if stepErr := d.step(ctx, "clean-up"); stepErr != nil {
		s.log.Warn("drill: cannot take the drill document to clean up; this sidecar deletes nothing (the sidecar that holds it does)", "backup_id", d.doc.BackupID, "err", stepErr)
		return
	}
	left := []string(nil)
	cleanup := s.deleteDrillIndices
	if err != nil {
		cleanup = s.deleteDrillIndicesSettled
	}
	if cleanupErr := cleanup(ctx, d.temporaryNames(), d.guard); cleanupErr != nil {
		left = d.temporaryNames()
		s.log.Error("drill: cannot delete its temporary indices; delete them by hand (a later drill also deletes them)", "backup_id", d.doc.BackupID, "indices", left, "err", cleanupErr)
		if err != nil {
			err = fmt.Errorf("%w; its temporary indices could not all be deleted (temporaryIndicesLeft)", err)
		}
	}
	now := s.now().UTC()
	change := func(doc *drillDoc) {
		doc.State, doc.EndTime, doc.Step, doc.TemporaryIndicesLeft = drillPassed, &now, "done", left
		if err != nil {
			reason := err.Error()
			doc.State, doc.FailureReason = drillFailed, &reason
		}
	}
	// The backup's copy first: once the drill's document says it ended, a new drill may start.
	final := d.current()
	change(&final)
	s.keepDrillResult(ctx, final)
	if updateErr := d.update(ctx, change); updateErr != nil {
		s.log.Error("drill: cannot record its result", "backup_id", d.doc.BackupID, "err", updateErr)
		return
	}
	if err != nil {
		s.log.Error("drill failed", "backup_id", d.doc.BackupID, "repository", s.cfg.Repository, "err", err)
	} else {
		s.log.Info("drill passed", "backup_id", d.doc.BackupID, "repository", s.cfg.Repository)
	}
}

// keepDrillResult stores a finished drill as the last one of its backup.
func (s *server) keepDrillResult(ctx context.Context, doc drillDoc) {
	if err := s.putDoc(ctx, s.drillResultDocID(doc.BackupID), &doc, &doc.docStamp); err != nil {
		s.log.Warn("drill: cannot keep its result with the backup (GET .../verify still shows it until the next drill)", "backup_id", doc.BackupID, "err", err)
	}
}

// lastDrill is the last finished drill of the backup, or nil (none, or it cannot be read: the
// backup's state is what GET is for, so that is not an error).
func (s *server) lastDrill(ctx context.Context, id string) *drillResult {
	last, _ := s.drillReads.do(ctx, id, func(ctx context.Context) (*drillResult, error) {
		var doc drillDoc
		_, found, err := s.loadDoc(ctx, s.drillResultDocID(id), &doc)
		if err != nil || !found || doc.BackupID != id {
			return nil, err
		}
		return &doc.drillResult, nil
	})
	return last
}

// drilledThese tells whether a drill was of exactly these snapshots (by UUID): a backup deleted
// and taken again under the same ID is another backup, whose drill this is not.
func drilledThese(r drillResult, snaps []snapshot) bool {
	for _, d := range r.Snapshots {
		if !slices.ContainsFunc(snaps, func(sn snapshot) bool { return sn.Name == d.Snapshot && sn.UUID == d.UUID }) {
			return false
		}
	}
	return len(r.Snapshots) > 0
}

// abandonDrill ends a drill whose sidecar went silent: it takes the drill's document first
// (compare-and-set at the version read, so a sidecar that is alive after all keeps it), then
// deletes the temporary indices and records FAILED. It returns the ended document and its
// version; losing the document to another sidecar is a 409.
func (s *server) abandonDrill(ctx context.Context, doc drillDoc, ver jobVersion) (drillDoc, jobVersion, error) {
	run := &drillRun{s: s, doc: doc, ver: ver}
	silentOwner, step := doc.Owner, doc.Step
	if err := run.update(ctx, func(d *drillDoc) { d.Owner, d.Step = s.owner, "abandoning" }); errors.Is(err, errLeaseLost) {
		return doc, ver, conflict("The drill of backup [%s] was renewed or taken over by another sidecar just now; see GET .../%s/verify.", doc.BackupID, doc.BackupID)
	} else if err != nil {
		return doc, ver, fmt.Errorf("take over the drill of backup [%s]: %w", doc.BackupID, err)
	}
	s.log.Warn("drill: its sidecar stopped renewing it; ending it and deleting its temporary indices", "backup_id", doc.BackupID, "owner", silentOwner)
	run.finish(ctx, fmt.Errorf("the sidecar running the drill (%s) stopped at step %s", silentOwner, step))
	if ended := run.current(); ended.State != drillRunning {
		return ended, run.ver, nil
	}
	return doc, ver, fmt.Errorf("cannot end the abandoned drill of backup [%s]; try again", doc.BackupID)
}

// watchDrills looks at this installation's drill every heartbeat: it notes that drills exist
// (so GET of a backup shows its last drill), and ends a drill whose document has not changed
// for staleAfter on this sidecar's own clock (its sidecar was killed), whatever the clocks of
// other sidecars say.
func (s *server) watchDrills(ctx context.Context) {
	var seenRev string
	var seenAt time.Time
	for {
		var doc drillDoc
		ver, found, err := s.loadDoc(ctx, s.drillDocID(), &doc)
		switch {
		case err != nil || !found || doc.BackupID == "": // none, or put back empty by undo
		case doc.State != drillRunning || s.drills.has(drillKey):
			s.drillsSeen.Store(true)
			seenRev = ""
		case doc.Rev != seenRev:
			s.drillsSeen.Store(true)
			seenRev, seenAt = doc.Rev, time.Now()
		case time.Since(seenAt) > s.staleAfter():
			if _, _, err := s.abandonDrill(ctx, doc, ver); err != nil {
				s.log.Warn("drill: cannot end an abandoned drill; will retry", "backup_id", doc.BackupID, "err", err)
			}
			seenRev = ""
		}
		if sleepCtx(ctx, heartbeatEvery) != nil {
			return
		}
	}
}

// restoreShards is the shard count of a finished restore.
type restoreShards struct {
	Total      int `json:"total"`
	Failed     int `json:"failed"`
	Successful int `json:"successful"`
}

// drillRestoreBody is the body of a drill's restore: the indices renamed to temporary names,
// without aliases (Optimize's aliases must keep pointing at the live indices), without replicas.
type drillRestoreBody struct {
	Indices             []string       `json:"indices"`
	IncludeGlobalState  bool           `json:"include_global_state"`
	IncludeAliases      bool           `json:"include_aliases"`
	RenamePattern       string         `json:"rename_pattern"`
	RenameReplacement   string         `json:"rename_replacement"`
	IndexSettings       map[string]any `json:"index_settings"`
	IgnoreIndexSettings []string       `json:"ignore_index_settings"`
}

// drillRestore restores exactly these indices of one snapshot to their temporary names and
// waits for Elasticsearch to finish (up to OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT).
func (s *server) drillRestore(ctx context.Context, snapshot string, indices []string, shardsTotal int) (restoreShards, error) {
	body, err := json.Marshal(drillRestoreBody{
		Indices: indices, RenamePattern: "(.+)", RenameReplacement: s.drillIndexPrefix() + "$1",
		// Elasticsearch refuses to drop auto_expand_replicas on restore, but lets it be turned off.
		IndexSettings:       map[string]any{"index.number_of_replicas": 0, "index.auto_expand_replicas": "false"},
		IgnoreIndexSettings: []string{"index.blocks.write"},
	})
	if err != nil {
		return restoreShards{}, err
	}
	wait := true
	req := esapi.SnapshotRestoreRequest{Repository: seg(s.cfg.Repository), Snapshot: seg(snapshot), Body: bytes.NewReader(body), WaitForCompletion: &wait}
	var answer struct {
		Snapshot struct {
			Shards restoreShards `json:"shards"`
		} `json:"snapshot"`
	}
	deadline := time.Now().Add(s.cfg.RestoreWaitTimeout)
	err = s.esCallWithin(ctx, s.cfg.RestoreWaitTimeout, s.es.restore, req, &answer)
	switch {
	case err == nil:
		return answer.Snapshot.Shards, nil
	case ctx.Err() != nil || !answerLost(err):
		return restoreShards{}, fmt.Errorf("restore snapshot %s to temporary indices: %w", snapshot, err)
	}
	// The answer was lost (a gateway that cuts long requests, a dropped connection): the
	// restore may run all the same. Follow it from the recovery of the temporary indices.
	s.log.Warn("drill: the restore's answer was lost; following the restore from the recovery of its indices", "snapshot", snapshot, "err", err)
	var temporary []string
	for _, ix := range indices {
		temporary = append(temporary, s.drillIndexPrefix()+ix)
	}
	part := planPart{Snapshot: snapshot, Indices: temporary, Shards: shardsTotal}
	for {
		rec, recErr := s.recovery(ctx, temporary)
		if recErr == nil {
			if p := restoreProgressOf(part, rec, nil); p.State == restoreCompleted {
				return restoreShards{Total: shardsTotal, Successful: p.ShardsDone}, nil
			}
		}
		if time.Now().After(deadline) {
			return restoreShards{}, fmt.Errorf("restore snapshot %s to temporary indices: its answer was lost (%v) and its shards did not all recover within %v (OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT)", snapshot, err, s.cfg.RestoreWaitTimeout)
		}
		if sleepCtx(ctx, s.cfg.PollInterval) != nil {
			return restoreShards{}, fmt.Errorf("restore snapshot %s to temporary indices: %w", snapshot, ctx.Err())
		}
	}
}

// countDocuments searches one index and returns its document count.
func (s *server) countDocuments(ctx context.Context, index string) (int64, error) {
	track := true
	size := 0
	var answer struct {
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Shards struct {
			Failed int `json:"failed"`
		} `json:"_shards"`
	}
	req := esapi.SearchRequest{Index: []string{seg(index)}, Size: &size, TrackTotalHits: track}
	if err := s.read(ctx, req, &answer); err != nil {
		return 0, err
	}
	if answer.Shards.Failed > 0 {
		return 0, fmt.Errorf("%d shards failed the search", answer.Shards.Failed)
	}
	return answer.Hits.Total.Value, nil
}

// deleteDrillIndices deletes these temporary indices, and any other index of this
// installation's drills left behind (their names start with drillIndexPrefix, which no
// Optimize installation's index does): exact names, resolved first, never a pattern.
func (s *server) deleteDrillIndices(ctx context.Context, names []string, guard func() error) error {
	prefix := s.drillIndexPrefix()
	ignore := true
	req := esapi.IndicesResolveIndexRequest{Name: []string{seg(prefix) + "*"}, ExpandWildcards: "all", IgnoreUnavailable: &ignore, FilterPath: []string{"indices.name"}}
	var answer struct {
		Indices []struct {
			Name string `json:"name"`
		} `json:"indices"`
	}
	if err := s.read(ctx, req, &answer); err != nil {
		return fmt.Errorf("resolve the drill's temporary indices %s*: %w", prefix, err)
	}
	all := slices.Clone(names)
	for _, ix := range answer.Indices {
		all = append(all, ix.Name)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	all = slices.DeleteFunc(all, func(n string) bool { return !strings.HasPrefix(n, prefix) })
	return s.deleteIndices(ctx, all, guard)
}

// drillSettleTime is how long a failed drill keeps looking for temporary indices after deleting
// them: a restore request whose answer it did not wait for (the sidecar stopping, a lost
// answer) may still be applied by the master, and create them after the delete.
const drillSettleTime = 3 * time.Second

// deleteDrillIndicesSettled is deleteDrillIndices, repeated until no temporary index has
// appeared for drillSettleTime.
func (s *server) deleteDrillIndicesSettled(ctx context.Context, names []string, guard func() error) error {
	if err := s.deleteDrillIndices(ctx, names, guard); err != nil {
		return err
	}
	quietSince := time.Now()
	for time.Since(quietSince) < drillSettleTime {
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
		left, err := s.existingIndices(ctx, names)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			if err := s.deleteDrillIndices(ctx, left, guard); err != nil {
				return err
			}
			quietSince = time.Now()
		}
	}
	return nil
}
