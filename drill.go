package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// A restore drill proves that a backup restores, without touching the installation: it
// restores the backup's snapshots into temporary indices outside every Optimize prefix
// (drillIndexPrefix), checks every shard, every index, a search on each and the metadata's
// schemaVersion, and deletes the temporary indices again, also when it fails or its sidecar
// stops. It is a leased job, one per installation ("drill-{prefix}"); each finished drill is
// also kept per backup ("drill-result-{prefix}-{hash of the ID}"), for the backup's details.

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

// drillIndex is one index of the backup, its temporary index, and the documents a search counted.
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
	// Previous is how the drill before this one ended.
	Previous *drillOutcome `json:"previous,omitempty"`
	leaseStamp
}

// clone is a deep copy of the drill: a change made on it never touches the stored drill.
func (d *drillDoc) clone() drillDoc {
	c := *d
	c.Snapshots = slices.Clone(d.Snapshots)
	c.Indices = slices.Clone(d.Indices)
	return c
}

// drillDocID is the ID of this installation's drill document.
func (s *server) drillDocID() string { return "drill-" + s.cfg.IndexPrefix }

// drillResultDocID is the ID of the last finished drill of a backup: a hash, as IDs may be long.
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
		doc = drillDoc{} // the decoder keeps fields the result leaves out: none of another drill's
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
// document (409 while another drill or a restore runs), and starts the drill in the background.
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
	run, previous, err := s.takeDrillDocument(ctx, s.newDrillDoc(info, snaps, own), info)
	if err != nil {
		return drillDoc{}, err
	}
	// Read after the document was taken: see nothingElseStarted.
	err = s.noRestoreRunning(ctx)
	if marks, _, merr := s.loadMarks(ctx); err == nil && (merr != nil || s.markedForDelete(marks, id)) {
		err = merr
		if err == nil {
			err = conflict("Backup [%s] is being deleted; there is nothing to verify.", id)
		}
	}
	if err == nil && !s.drills.start(drillKey, run.run) {
		err = errStopping
	}
	if err != nil {
		// The document this drill replaced goes back: a drill that never ran is no verification.
		if uerr := run.update(ctx, func(doc *drillDoc) { *doc = previous }); uerr != nil {
			run.log.Warn("drill: cannot put back the drill document of a refused drill; it is ended as abandoned later", "err", uerr)
		}
		return drillDoc{}, err
	}
	started = true
	s.drillsSeen.Store(true)
	return run.current(), nil
}

// newDrillDoc is the document of a new drill of the backup: its snapshots of this installation
// (own) in part order, as a restore restores them, and the temporary index of each index.
func (s *server) newDrillDoc(info backupInfo, snaps []snapshot, own []string) drillDoc {
	doc := drillDoc{Repository: s.cfg.Repository, drillResult: drillResult{BackupID: info.BackupID, State: drillRunning, Step: "start",
		StartTime: ptr(s.now().UTC()), Version: versionOf(own), Snapshots: []drillSnapshot{}, Indices: []drillIndex{}}}
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
	return doc
}

// takeDrillDocument stores doc as the installation's drill over the last one if it ended (else
// 409), and returns the drill and the document it replaced.
func (s *server) takeDrillDocument(ctx context.Context, doc drillDoc, info backupInfo) (*drillRun, drillDoc, error) {
	var stored drillDoc
	ver, found, err := s.loadDoc(ctx, s.drillDocID(), &stored)
	if err != nil {
		return nil, stored, err
	}
	if found && stored.State == drillRunning {
		// Taken over only by watchDrills, which judges silence by its own clock: another
		// sidecar's clock says nothing here.
		return nil, stored, conflict("The drill of backup [%s] is running (step %s); one drill runs at a time: wait until GET .../%s/verify reports PASSED or FAILED (a drill whose sidecar stopped is ended by a running sidecar within %v).", stored.BackupID, stored.Step, stored.BackupID, s.staleAfter()+heartbeatEvery)
	}
	if err := s.noRestoreRunning(ctx); err != nil {
		return nil, stored, err
	}
	own := make([]string, 0, len(doc.Snapshots))
	for _, sn := range doc.Snapshots {
		own = append(own, sn.Snapshot)
	}
	size, err := s.snapshotsSize(ctx, own)
	if err != nil {
		return nil, stored, err
	}
	total, available, err := s.dataNodesDisk(ctx)
	if err != nil {
		return nil, stored, err
	}
	if err := drillRoom(size, total, available); err != nil {
		return nil, stored, err
	}
	doc.Previous = stored.Previous
	if found && stored.EndTime != nil {
		doc.Previous = &drillOutcome{BackupID: stored.BackupID, State: stored.State, EndTime: *stored.EndTime}
	}
	run := s.newDrillRun(doc, ver, info)
	if err := run.start(ctx); errors.Is(err, errLeaseTaken) {
		return nil, stored, conflict("Another replica started a drill at the same moment; one drill runs at a time: see GET .../verify of its backup.")
	} else if err != nil {
		return nil, stored, err
	}
	return run, stored, nil
}

// drillOutcome is how a finished drill ended, kept while the next drill runs (for the metrics).
type drillOutcome struct {
	BackupID string    `json:"backupId"`
	State    string    `json:"state"`
	EndTime  time.Time `json:"endTime"`
}

// drillDiskLimit is the share of the data nodes' disk a drill may fill: Elasticsearch's default
// low watermark, above which it allocates no new shard (the drill's restore would wait) and
// nearer to the flood stage, which makes every index read-only, Optimize's too.
const drillDiskLimit = 0.85

// drillRoom refuses (409) a drill of size bytes that would fill the data nodes past drillDiskLimit.
func drillRoom(size, total, available int64) error {
	if total > 0 && float64(total-available+size) > drillDiskLimit*float64(total) {
		return conflict("A drill would restore %d MiB next to the live indices, but the data nodes have %d MiB free of %d MiB: that would fill them beyond %.0f%% (Elasticsearch's low disk watermark). Free disk, or verify this backup on another cluster.",
			size>>20, available>>20, total>>20, drillDiskLimit*100)
	}
	return nil
}

// noRestoreRunning refuses (409) while a restore of this installation is pending or running.
func (s *server) noRestoreRunning(ctx context.Context) error {
	stored, err := s.loadJob(ctx)
	if err != nil {
		return err
	}
	if job := stored.doc; stored.found && job.active() {
		return conflict("The restore of backup [%s] is %s (step %s); a drill waits until GET .../%s/restore reports COMPLETED or FAILED.", job.BackupID, job.State, job.Step, job.BackupID)
	}
	return nil
}

// drillUsing refuses (409) to delete the backup that a running drill restores.
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

// drillRun is one drill this process runs, with the backup as read when it started.
type drillRun struct {
	*leasedJob[drillDoc, *drillDoc]
	info backupInfo
}

// newDrillRun holds the drill doc, stored at version ver (zero: not stored yet).
func (s *server) newDrillRun(doc drillDoc, ver jobVersion, info backupInfo) *drillRun {
	return &drillRun{leasedJob: newLeasedJob[drillDoc](s, s.drillDocID(), doc, ver, doc.BackupID), info: info}
}

// run is the drill: every step while the lease is renewed, then the cleanup, whatever happened.
func (d *drillRun) run(ctx context.Context) {
	stepsCtx, err := d.leasedJob.run(ctx, d.steps)
	if lost(stepsCtx, err) {
		// Another sidecar took the drill over: it cleans up, this one deletes nothing (see finish).
		d.log.Warn("drill: another sidecar took it over; this one stops without cleaning up")
		return
	}
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("the sidecar stopped during the drill (%w)", err)
	}
	// The cleanup and the result must be written also when the sidecar is stopping. An expired
	// lease ends here too: finish's first write decides whether this sidecar still holds it.
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
	if err := d.drillable(ctx); err != nil {
		return err
	}
	if err := d.step(ctx, "clean-up-before"); err != nil {
		return err
	}
	if err := d.s.deleteDrillIndices(ctx, d.temporaryNames(), d.confirmed(ctx), 0); err != nil {
		return err
	}
	for i, sn := range d.current().Snapshots {
		if err := d.restorePart(ctx, i, sn); err != nil {
			return err
		}
	}
	if err := d.checkRestored(ctx); err != nil {
		return err
	}
	if err := d.step(ctx, "check-schema-version"); err != nil {
		return err
	}
	return d.checkSchemaVersion(ctx)
}

// drillable fails for a backup that a restore would refuse: not COMPLETED, not two parts of
// this installation, another installation's indices in it, or a temporary name too long.
func (d *drillRun) drillable(ctx context.Context) error {
	if d.info.State != stateCompleted {
		reason := ""
		if d.info.FailureReason != nil {
			reason = ": " + *d.info.FailureReason
		}
		return fmt.Errorf("the backup is %s%s; only a COMPLETED backup can be restored", d.info.State, reason)
	}
	doc := d.current()
	if len(doc.Snapshots) != partCount {
		return fmt.Errorf("the backup has %d snapshots of this installation, not %d", len(doc.Snapshots), partCount)
	}
	var all []string
	for _, ix := range doc.Indices {
		if len(ix.TemporaryIndex) > maxIndexNameBytes {
			return fmt.Errorf("the temporary name of index %s would be longer than Elasticsearch's %d bytes; this backup cannot be drilled", ix.Index, maxIndexNameBytes)
		}
		all = append(all, ix.Index)
	}
	in, _, _, err := d.s.installationIndices(ctx)
	if err != nil {
		return err
	}
	if foreign := d.s.foreignIndices(in, all); len(foreign) > 0 {
		return fmt.Errorf("the backup holds indices that are not this installation's (prefix [%s]): [%s]; a restore refuses it", d.s.cfg.IndexPrefix, strings.Join(foreign, ", "))
	}
	return nil
}

// restorePart restores snapshot i's indices to their temporary names, waits for Elasticsearch
// to finish (up to OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT), and records its shards.
func (d *drillRun) restorePart(ctx context.Context, i int, sn drillSnapshot) error {
	s := d.s
	if err := d.step(ctx, fmt.Sprintf("restore-part-%d", i+1)); err != nil {
		return err
	}
	var indices, temporary []string
	for _, ix := range d.current().Indices {
		if ix.Snapshot == sn.Snapshot {
			indices, temporary = append(indices, ix.Index), append(temporary, ix.TemporaryIndex)
		}
	}
	if err := d.confirmed(ctx)(); err != nil {
		return err
	}
	shards, err := s.restoreToTemporary(ctx, sn.Snapshot, indices, s.drillIndexPrefix())
	if err != nil && ctx.Err() == nil && answerLost(err) {
		// The answer was lost (a gateway that cuts long requests, a dropped connection): the
		// restore may run all the same. Follow it from the recovery of the temporary indices.
		s.log.Warn("drill: the restore's answer was lost; following the restore from the recovery of its indices", "snapshot", sn.Snapshot, "err", err)
		if ok, aerr := s.appeared(ctx, s.log.With("snapshot", sn.Snapshot), temporary); aerr != nil {
			return fmt.Errorf("restore snapshot %s to temporary indices: its answer was lost (%v), then: %w", sn.Snapshot, err, aerr)
		} else if !ok {
			return fmt.Errorf("restore snapshot %s to temporary indices: its answer was lost (%v) and its indices did not appear within %v: the restore did not start", sn.Snapshot, err, s.cfg.ESTimeout)
		}
		part := planPart{Snapshot: sn.Snapshot, Indices: temporary, Shards: sn.ShardsTotal}
		log := s.log.With("snapshot", sn.Snapshot)
		watch := newStallWatch("the drill's restore of snapshot "+sn.Snapshot, s.cfg.RestoreStallTimeout)
		if err := s.retrying(ctx, log, "follow the drill's restore", func() error {
			if err := watch.stalled(time.Now()); err != nil {
				return err
			}
			return s.followRecovery(ctx, log, part, nil, watch, func(restoreProgress) error { return nil })
		}); err != nil {
			return fmt.Errorf("restore snapshot %s to temporary indices: its answer was lost, then: %w", sn.Snapshot, err)
		}
		shards, err = restoreShards{Total: sn.ShardsTotal, Successful: sn.ShardsTotal}, nil
	}
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
	return nil
}

// checkRestored checks that every index was restored and answers a search, recording its count.
func (d *drillRun) checkRestored(ctx context.Context) error {
	if err := d.step(ctx, "check-indices"); err != nil {
		return err
	}
	existing, err := d.s.existingIndices(ctx, d.temporaryNames())
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
		count, err := d.s.countDocuments(ctx, ix.TemporaryIndex)
		if err != nil {
			return fmt.Errorf("the restored index %s (%s) answers no search: %w", ix.Index, ix.TemporaryIndex, err)
		}
		if err := d.update(ctx, func(doc *drillDoc) { doc.Indices[i].Documents = &count }); err != nil {
			return err
		}
	}
	return nil
}

// temporaryNames are the names of the drill's temporary indices.
func (d *drillRun) temporaryNames() []string {
	var out []string
	for _, ix := range d.current().Indices {
		out = append(out, ix.TemporaryIndex)
	}
	return out
}

// checkSchemaVersion compares the restored metadata index's schemaVersion with the version tag.
func (d *drillRun) checkSchemaVersion(ctx context.Context) error {
	doc := d.current()
	pattern := regexp.MustCompile(`^` + regexp.QuoteMeta(d.s.cfg.IndexPrefix) + `-metadata_v\d+$`)
	i := slices.IndexFunc(doc.Indices, func(ix drillIndex) bool { return pattern.MatchString(ix.Index) })
	if i < 0 {
		return fmt.Errorf("the backup holds no metadata index (%s-metadata_v*), so its schemaVersion cannot be checked", d.s.cfg.IndexPrefix)
	}
	ix := doc.Indices[i]
	got, err := d.s.schemaVersion(ctx, ix.TemporaryIndex)
	if err != nil {
		return fmt.Errorf("read the schemaVersion from the restored metadata index %s (%s): %w", ix.Index, ix.TemporaryIndex, err)
	}
	if err := d.update(ctx, func(doc *drillDoc) { doc.SchemaVersion = got }); err != nil {
		return err
	}
	if versionPattern.FindString(got) != doc.Version {
		return fmt.Errorf("the restored metadata index %s says schemaVersion %q, but the backup's snapshots are tagged %s: the backup does not hold what its name says", ix.Index, got, doc.Version)
	}
	return nil
}

// finish deletes the temporary indices and records the result: PASSED when err is nil.
func (d *drillRun) finish(ctx context.Context, err error) {
	s := d.s
	// Hold the document before deleting anything: a sidecar that lost the drill to another
	// (which may have started a new drill with the same temporary names) deletes nothing.
	if stepErr := d.step(ctx, "clean-up"); stepErr != nil {
		s.log.Warn("drill: cannot take the drill document to clean up; this sidecar deletes nothing (the sidecar that holds it does)", "err", stepErr)
		return
	}
	left, settle := []string(nil), time.Duration(0)
	if err != nil {
		settle = drillSettleTime
	}
	if cleanupErr := s.deleteDrillIndices(ctx, d.temporaryNames(), d.confirmed(ctx), settle); cleanupErr != nil {
		left = d.temporaryNames()
		s.log.Error("drill: cannot delete its temporary indices; delete them by hand (a later drill also deletes them)", "indices", left, "err", cleanupErr)
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
	if d.guard() == nil { // else another sidecar may have ended the drill and kept its result
		if perr := s.putDoc(ctx, s.drillResultDocID(final.BackupID), &final, &final.docStamp); perr != nil {
			s.log.Warn("drill: cannot keep its result with the backup (GET .../verify still shows it until the next drill)", "backup_id", final.BackupID, "err", perr)
		}
	}
	if updateErr := d.update(ctx, change); updateErr != nil {
		s.log.Error("drill: cannot record its result", "err", updateErr)
		return
	}
	if err != nil {
		s.log.Error("drill failed", "repository", s.cfg.Repository, "err", err)
	} else {
		s.log.Info("drill passed", "repository", s.cfg.Repository)
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

// abandonDrill takes over a drill whose sidecar went silent, to clean up and record FAILED.
func (s *server) abandonDrill(ctx context.Context, doc drillDoc, ver jobVersion) error {
	run := s.newDrillRun(doc, ver, backupInfo{})
	if err := run.takeOver(ctx, func(d *drillDoc) { d.Step = "abandoning" }); err != nil {
		return err
	}
	run.log.Warn("drill: its sidecar stopped renewing it; ending it and deleting its temporary indices", "owner", doc.Owner)
	run.finish(ctx, fmt.Errorf("the sidecar running the drill (%s) stopped at step %s", doc.Owner, doc.Step))
	return nil
}

// watchDrills runs in every sidecar: it notes that drills exist (so GET of a backup shows its
// last drill), and ends a drill whose sidecar went silent.
func (s *server) watchDrills(ctx context.Context) {
	active := func(doc drillDoc) bool {
		if doc.BackupID != "" { // "" when a refused drill put back an empty one
			s.drillsSeen.Store(true)
		}
		return doc.BackupID != "" && doc.State == drillRunning
	}
	watchLeased[drillDoc](ctx, s, s.drillDocID(), active, func() bool { return s.drills.has(drillKey) }, s.abandonDrill)
}

// deleteDrillIndices deletes these temporary indices, and any other index of this
// installation's drills left behind (their names start with drillIndexPrefix, which no
// Optimize installation's index does): exact names, resolved first, never a pattern. Then,
// until none of names has appeared for settle, it deletes those that appear again.
func (s *server) deleteDrillIndices(ctx context.Context, names []string, guard func() error, settle time.Duration) error {
	prefix := s.drillIndexPrefix()
	left, err := s.indicesStartingWith(ctx, prefix)
	if err != nil {
		return err
	}
	all := slices.Concat(names, left)
	slices.Sort(all)
	all = slices.DeleteFunc(slices.Compact(all), func(n string) bool { return !strings.HasPrefix(n, prefix) })
	if err := s.deleteIndices(ctx, all, guard); err != nil {
		return err
	}
	for quietSince := time.Now(); time.Since(quietSince) < settle; {
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
		again, err := s.existingIndices(ctx, names)
		if err != nil {
			return err
		}
		if len(again) > 0 {
			if err := s.deleteDrillIndices(ctx, again, guard, 0); err != nil {
				return err
			}
			quietSince = time.Now()
		}
	}
	return nil
}

// drillSettleTime is how long a failed drill keeps looking for temporary indices after deleting
// them: a restore request whose answer it did not wait for (the sidecar stopping, a lost
// answer) may still be applied by the master, and create them after the delete.
const drillSettleTime = 3 * time.Second
