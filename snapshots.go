package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// The snapshot requests: every one names its snapshots exactly (escaped, see seg), and only
// the read of one backup and the list use a pattern, whose answers are filtered by parsed name.

// snapshot is one Elasticsearch snapshot as the get-snapshots API reports it.
type snapshot struct {
	Name        string            `json:"snapshot"`
	UUID        string            `json:"uuid"`
	State       string            `json:"state"`
	Reason      string            `json:"reason"`
	StartMillis int64             `json:"start_time_in_millis"`
	EndMillis   int64             `json:"end_time_in_millis"`
	Indices     []string          `json:"indices"`
	Metadata    map[string]any    `json:"metadata"`
	Failures    []snapshotFailure `json:"failures"`
	Shards      struct {
		Total      int `json:"total"`
		Successful int `json:"successful"`
	} `json:"shards"`
}

// snapshotFailure is one shard that could not be snapshotted.
type snapshotFailure struct {
	Index   string `json:"index"`
	ShardID int    `json:"shard_id"`
	Reason  string `json:"reason"`
	NodeID  string `json:"node_id"`
	Status  string `json:"status"`
}

// snapshotFields limits answers to what the sidecar reads, for repositories of thousands.
var snapshotFields = []string{
	"snapshots.snapshot", "snapshots.uuid", "snapshots.state", "snapshots.reason", "snapshots.start_time_in_millis",
	"snapshots.end_time_in_millis", "snapshots.indices", "snapshots.metadata", "snapshots.failures", "snapshots.shards",
	"failures",
}

// listFields are the fields listing needs: not the index lists and metadata, most of an answer.
var listFields = []string{
	"snapshots.snapshot", "snapshots.state", "snapshots.reason", "snapshots.start_time_in_millis",
	"snapshots.end_time_in_millis", "snapshots.failures", "failures",
}

// stateFields are the fields a GET of one backup reads: what backupState needs and the UUIDs a
// drill is matched by; not the index lists and metadata, the bulk of a GET's decoding.
var stateFields = append(listFields[:len(listFields):len(listFields)], "snapshots.uuid")

// getSnapshotsAnswer is the get-snapshots answer. Elasticsearch reports a missing repository
// inside a 200 answer, in failures, not as an error status.
type getSnapshotsAnswer struct {
	Snapshots []snapshot                 `json:"snapshots"`
	Failures  map[string]json.RawMessage `json:"failures"`
}

// snapshotPrefix is the start of every snapshot name of the backup with this ID.
func snapshotPrefix(id string) string { return "camunda_optimize_" + id + "_" }

// snapshotName is the name of part partNo of the backup with this ID and version tag.
func snapshotName(id, version string, partNo int) string {
	return fmt.Sprintf("%s%s_part_%d_of_%d", snapshotPrefix(id), version, partNo, partCount)
}

// partCount is how many snapshots make one Optimize backup.
const partCount = 2

// parseSnapshotName splits a snapshot name into backup ID, version tag, part number and part
// count; ok is false for a name that does not follow Optimize's scheme,
// camunda_optimize_{id}_{X.Y.Z}_part_{n}_of_{m}, part numbers without leading zeros. It accepts
// exactly what the regular expression snapshotNameRule (fuzz_test.go) matches, without its
// backtracking (listing parses every snapshot's name): no field after the ID holds a '_'.
func parseSnapshotName(name string) (id, version string, part, of int, ok bool) {
	rest, found := strings.CutPrefix(name, "camunda_optimize_")
	if !found {
		return "", "", 0, 0, false
	}
	// From the right: {m}, "of", {n}, "part", {X.Y.Z}; what is left is the ID.
	var fields [5]string
	for i := len(fields) - 1; i >= 0; i-- {
		cut := strings.LastIndexByte(rest, '_')
		if cut < 0 {
			return "", "", 0, 0, false
		}
		rest, fields[i] = rest[:cut], rest[cut+1:]
	}
	id, version = rest, fields[0]
	// The ID is any text but a line break (the expression's '.'), at least one character.
	if id == "" || strings.IndexByte(id, '\n') >= 0 || !isVersion(version) || fields[1] != "part" || fields[3] != "of" {
		return "", "", 0, 0, false
	}
	part, ok1 := partNumber(fields[2])
	of, ok2 := partNumber(fields[4])
	if !ok1 || !ok2 {
		return "", "", 0, 0, false
	}
	return id, version, part, of, true
}

// isVersion tells whether s is three runs of ASCII digits joined by dots (X.Y.Z).
func isVersion(s string) bool {
	for range 2 {
		dot := strings.IndexByte(s, '.')
		if dot < 0 || !allDigits(s[:dot]) {
			return false
		}
		s = s[dot+1:]
	}
	return allDigits(s)
}

// partNumber parses a part number or count: 1 to 9 ASCII digits, no leading zero.
func partNumber(s string) (int, bool) {
	if len(s) > 9 || !allDigits(s) || s[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// allDigits tells whether s is one or more ASCII digits.
func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// getSnapshots returns the snapshots whose names match pattern (escaped), newest first, with
// these fields. OpenSearch's get-snapshots has no sort or order (it refuses them as
// unrecognized parameters), so there the answer is sorted here.
func (s *server) getSnapshots(ctx context.Context, pattern string, fields []string) (getSnapshotsAnswer, error) {
	req := esapi.SnapshotGetRequest{Repository: seg(s.cfg.Repository), Snapshot: []string{pattern}, FilterPath: fields}
	if !s.cfg.openSearch() {
		req.Sort, req.Order = "start_time", "desc"
	}
	var answer getSnapshotsAnswer
	err := s.read(ctx, req, &answer)
	var ee *esError
	if s.cfg.openSearch() && strings.Contains(pattern, "*") && errors.As(err, &ee) && ee.Type == "snapshot_missing_exception" {
		// OpenSearch answers a pattern that matches no snapshot with 404 snapshot_missing_exception;
		// Elasticsearch with an empty list, which is what it means.
		return getSnapshotsAnswer{}, nil
	}
	if err != nil {
		return answer, fmt.Errorf("get snapshots %s: %w", pattern, err)
	}
	// Elasticsearch reports a missing repository in a 200 answer's failures (OpenSearch answers
	// 404 repository_missing_exception, an error above).
	if err := repositoryFailure(answer.Failures); err != nil {
		return answer, fmt.Errorf("get snapshots %s: %w", pattern, err)
	}
	if s.cfg.openSearch() {
		slices.SortFunc(answer.Snapshots, func(a, b snapshot) int {
			return cmp.Or(cmp.Compare(b.StartMillis, a.StartMillis), strings.Compare(b.Name, a.Name))
		})
	}
	return answer, nil
}

// repositoryFailure is the error in a get-snapshots answer's failures, or nil: Elasticsearch
// reports a missing repository inside a 200 answer.
func repositoryFailure(failures map[string]json.RawMessage) error {
	for _, raw := range failures {
		var failure struct{ Type, Reason string }
		_ = json.Unmarshal(raw, &failure)
		status := http.StatusInternalServerError
		if failure.Type == "repository_missing_exception" {
			status = http.StatusNotFound
		}
		return &esError{Status: status, Type: failure.Type, Reason: failure.Reason}
	}
	return nil
}

// catalogueEntry is one snapshot as the catalogue lists it; at 20,000 snapshots a third of the
// memory of a snapshot's.
type catalogueEntry struct {
	Name  string `json:"snapshot"`
	UUID  string `json:"uuid"`
	State string `json:"state"`
}

// catalogueFields are what the catalogue keeps of each snapshot: not the index lists, which
// at thousands of snapshots would be most of the answer.
var catalogueFields = []string{"snapshots.snapshot", "snapshots.uuid", "snapshots.state", "failures"}

// catalogue returns every snapshot named like an Optimize backup with its name, UUID and state
// only, from the repository's index (verbose=false): Elasticsearch loads no snapshot's details
// from the blob store for it (no snapshot_meta task), however many the repository holds. Its
// order is by name, not by time, on Elasticsearch 8.14 and OpenSearch 2.19 alike. It sends no
// sort, order, size or after: Elasticsearch refuses them with verbose=false, and OpenSearch
// knows none of them. ignore_unavailable, because OpenSearch answers a pattern that matches
// nothing with a 404 without it (Elasticsearch with an empty list either way).
func (s *server) catalogue(ctx context.Context) ([]catalogueEntry, error) {
	req := esapi.SnapshotGetRequest{
		Repository:        seg(s.cfg.Repository),
		Snapshot:          []string{"camunda_optimize_*"},
		Verbose:           new(false),
		IgnoreUnavailable: new(true),
		FilterPath:        catalogueFields,
	}
	var answer struct {
		Snapshots []catalogueEntry           `json:"snapshots"`
		Failures  map[string]json.RawMessage `json:"failures"`
	}
	if err := s.read(ctx, req, &answer); err != nil {
		return nil, fmt.Errorf("read the catalogue of repository %s: %w", s.cfg.Repository, err)
	}
	if err := repositoryFailure(answer.Failures); err != nil {
		return nil, fmt.Errorf("read the catalogue of repository %s: %w", s.cfg.Repository, err)
	}
	return answer.Snapshots, nil
}

// snapshotsNamed returns the snapshots of exactly these names with these fields, in batches
// that fit Elasticsearch's request line. A name that is gone by now is left out
// (ignore_unavailable), not an error. Elasticsearch loads each finished snapshot's details
// from the blob store (one snapshot_meta task each); a running one's come from the cluster
// state, for nothing. No sort or size: OpenSearch knows neither.
func (s *server) snapshotsNamed(ctx context.Context, names []string, fields []string) ([]snapshot, error) {
	var out []snapshot
	for _, batch := range batches(names) {
		req := esapi.SnapshotGetRequest{
			Repository:        seg(s.cfg.Repository),
			Snapshot:          segs(batch),
			IgnoreUnavailable: new(true),
			FilterPath:        fields,
		}
		var answer getSnapshotsAnswer
		err := s.read(ctx, req, &answer)
		if err == nil {
			err = repositoryFailure(answer.Failures)
		}
		if err != nil {
			return nil, fmt.Errorf("get snapshots %s: %w", strings.Join(batch, ","), err)
		}
		out = append(out, answer.Snapshots...)
	}
	return out, nil
}

// backupSnapshots returns every snapshot of the backup with exactly this ID: one request. The
// pattern camunda_optimize_{id}_* also matches IDs that start with id_; those are dropped by
// parsed name. It is the first request of every create, read, delete and restore, so an ID too
// long for Elasticsearch's request line is refused here, as a 400.
func (s *server) backupSnapshots(ctx context.Context, id string) ([]snapshot, error) {
	return s.backupSnapshotsWith(ctx, id, snapshotFields)
}

// backupStates is backupSnapshots with only stateFields, for a GET: nothing may decide by them
// what to delete or restore (no index_names=false: older versions refuse it). Concurrent GETs
// share the read (sharedReads), so the snapshots must not be changed.
func (s *server) backupStates(ctx context.Context, id string) ([]snapshot, error) {
	return s.stateReads.do(ctx, id, func(ctx context.Context) ([]snapshot, error) {
		return s.backupSnapshotsWith(ctx, id, stateFields)
	})
}

// backupSnapshotsWith is backupSnapshots with these fields.
func (s *server) backupSnapshotsWith(ctx context.Context, id string, fields []string) ([]snapshot, error) {
	answer, err := s.getSnapshots(ctx, seg(snapshotPrefix(id))+"*", fields)
	var ee *esError
	if errors.As(err, &ee) && ee.Type == "too_long_http_line_exception" {
		return nil, badRequest("The backupId is %d bytes long once escaped for a URL: too long for Elasticsearch, which refused the request line (%s; its setting http.max_initial_line_length). Use a shorter backupId.",
			len(seg(id)), strings.TrimSuffix(ee.Reason, "."))
	}
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(answer.Snapshots, func(snap snapshot) bool {
		got, _, _, _, ok := parseSnapshotName(snap.Name)
		return !ok || got != id
	}), nil
}

// backupsNamed returns the backups whose IDs keep accepts (nil: every backup), their snapshots
// read with these fields and grouped by backup ID. The catalogue names them (free), then each is
// read once, by name: one snapshot_meta task per finished snapshot, whatever the repository
// holds besides.
func (s *server) backupsNamed(ctx context.Context, keep func(id string) bool, fields []string) (map[string][]snapshot, error) {
	all, err := s.catalogue(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, sn := range all {
		if id, _, _, _, ok := parseSnapshotName(sn.Name); ok && (keep == nil || keep(id)) {
			names = append(names, sn.Name)
		}
	}
	slices.Sort(names)
	read, err := s.snapshotsNamed(ctx, names, fields)
	if err != nil {
		return nil, err
	}
	return groupByBackup(read), nil
}

// allBackups returns every backup with these fields: one get-snapshots of every Optimize
// snapshot, which loads each once, as a client asking directly would (in one request, which
// is ten times faster than asking by name in batches of a request line). A repository whose
// answer would be larger than the sidecar reads at once (about 50,000 snapshots) is read by
// name instead (backupsNamed). Never through get-snapshots' sort, size and after: Elasticsearch
// loads every matching snapshot again for each page.
func (s *server) allBackups(ctx context.Context, fields []string) (map[string][]snapshot, error) {
	answer, err := s.getSnapshots(ctx, "camunda_optimize_*", fields)
	if errors.Is(err, errAnswerTooLarge) {
		s.log.Info("the repository is too large to list in one answer; reading its snapshots by name", "repository", s.cfg.Repository)
		return s.backupsNamed(ctx, nil, fields)
	}
	if err != nil {
		return nil, err
	}
	return groupByBackup(answer.Snapshots), nil
}

// groupByBackup groups snapshots named like Optimize's backups by backup ID.
func groupByBackup(snaps []snapshot) map[string][]snapshot {
	byID := map[string][]snapshot{}
	for _, snap := range snaps {
		if id, _, _, _, ok := parseSnapshotName(snap.Name); ok {
			group := byID[id]
			if group == nil {
				group = make([]snapshot, 0, partCount) // one allocation per backup, not two
			}
			byID[id] = append(group, snap)
		}
	}
	return byID
}

// snapshotByName returns one snapshot by its exact name, or ok false if it does not exist.
func (s *server) snapshotByName(ctx context.Context, name string) (snap snapshot, ok bool, err error) {
	answer, err := s.getSnapshots(ctx, seg(name), snapshotFields)
	var ee *esError
	if errors.As(err, &ee) && ee.Type == "snapshot_missing_exception" {
		return snapshot{}, false, nil
	}
	if err != nil {
		return snapshot{}, false, err
	}
	if i := slices.IndexFunc(answer.Snapshots, func(sn snapshot) bool { return sn.Name == name }); i >= 0 {
		return answer.Snapshots[i], true, nil
	}
	return snapshot{}, false, nil
}

// runningSnapshots returns the snapshots running in the repository, with their names only.
func (s *server) runningSnapshots(ctx context.Context) ([]snapshot, error) {
	var current struct{ Snapshots []snapshot }
	req := esapi.SnapshotGetRequest{Repository: seg(s.cfg.Repository), Snapshot: []string{"_current"}, FilterPath: []string{"snapshots.snapshot"}}
	if err := s.read(ctx, req, &current); err != nil {
		return nil, fmt.Errorf("get running snapshots: %w", err)
	}
	return current.Snapshots, nil
}

// snapshotRequest is the body of a create-snapshot request.
type snapshotRequest struct {
	Indices            []string         `json:"indices"`
	IncludeGlobalState bool             `json:"include_global_state"`
	FeatureStates      []string         `json:"feature_states"`
	Metadata           snapshotMetadata `json:"metadata"`
}

// snapshotMetadata is stored with each snapshot so that any replica can tell what it is.
type snapshotMetadata struct {
	// BackupID is left out when it would make the metadata larger than Elasticsearch keeps
	// (see startSnapshot); nothing reads it back, the ID is parsed from the snapshot's name.
	BackupID  string `json:"backupId,omitempty"`
	Version   string `json:"version"`
	PartNo    int    `json:"partNo"`
	PartCount int    `json:"partCount"`
	CreatedBy string `json:"createdBy"`
	// Kind is "safety" for the backup a restore takes before it replaces indices, "scheduled"
	// for the scheduler's (the only ones retention deletes), empty for a backup asked for.
	Kind string `json:"kind,omitempty"`
	// IndexPrefix is the installation the backup is of: a repository can be shared.
	IndexPrefix string `json:"indexPrefix"`
	// BackupNonce is the same in both parts of one backup: a DELETE that finds a part 2
	// started after it read the backup deletes that part, and no other snapshot.
	BackupNonce string `json:"backupNonce,omitempty"`
	// Nonce tells this request's snapshot from another's of the same name, when an answer got
	// lost and the snapshot is read back.
	Nonce string `json:"nonce"`
}

// newNonce is a random token for one snapshot create.
func newNonce() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// esMaxMetadataBytes is the most metadata, as JSON, Elasticsearch keeps with a snapshot; it
// refuses the create beyond it.
const esMaxMetadataBytes = 1024

// startSnapshot asks Elasticsearch, once, to start a snapshot of exactly these indices. When
// the answer is lost (see answerLost), the snapshot is read back: with this request's nonce, the
// create went through. A name someone else holds is errSnapshotNameTaken.
func (s *server) startSnapshot(ctx context.Context, name string, indices []string, meta snapshotMetadata) error {
	if len(indices) == 0 {
		// An empty list would snapshot the whole cluster.
		return fmt.Errorf("create snapshot %s: refusing to snapshot an empty index list", name)
	}
	meta.Nonce = newNonce()
	if b, _ := json.Marshal(meta); len(b) > esMaxMetadataBytes {
		// A long ID (Optimize allows 3996 characters) would make Elasticsearch refuse the
		// snapshot; Optimize's own snapshots carry no metadata at all.
		meta.BackupID = ""
	}
	body, err := json.Marshal(snapshotRequest{Indices: indices, IncludeGlobalState: false, FeatureStates: []string{"none"}, Metadata: meta})
	if err != nil {
		return err
	}
	req := esapi.SnapshotCreateRequest{Repository: seg(s.cfg.Repository), Snapshot: seg(name), Body: bytes.NewReader(body), WaitForCompletion: new(false), MasterTimeout: s.cfg.ESTimeout}
	err = s.write(ctx, req, nil)
	var ee *esError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && nameInUse(ee):
		return fmt.Errorf("create snapshot %s: %w: %v", name, errSnapshotNameTaken, err)
	case !answerLost(err):
		return fmt.Errorf("create snapshot %s: %w", name, err)
	}
	snap, found, readErr := s.snapshotByName(ctx, name)
	switch {
	case readErr != nil:
		return fmt.Errorf("create snapshot %s: the answer was lost (%v) and reading it back failed: %w", name, err, readErr)
	case !found:
		return fmt.Errorf("create snapshot %s (not created): %w", name, err)
	case snap.Metadata["nonce"] != meta.Nonce:
		return fmt.Errorf("create snapshot %s: %w: the answer was lost (%v) and the snapshot that exists is not this request's", name, errSnapshotNameTaken, err)
	}
	s.log.Warn("snapshot create answer lost, but the snapshot exists with this request's nonce; carrying on", "snapshot", name, "err", err)
	return nil
}

// nameInUse tells whether a create was refused because a snapshot of that name exists or is
// running: Elasticsearch says so with a type of its own; OpenSearch with the
// invalid_snapshot_name_exception it also answers for a name it refuses (an ID's business, see
// answerOf), told apart by the reason.
func nameInUse(ee *esError) bool {
	return ee.Type == "snapshot_name_already_in_use_exception" ||
		ee.Type == "invalid_snapshot_name_exception" && strings.Contains(ee.Reason, "snapshot with the same name")
}

// deleteSnapshots deletes exactly these snapshots (never a pattern; a running one is aborted),
// in batches that fit Elasticsearch's request line (one, unless the backupId is very long).
func (s *server) deleteSnapshots(ctx context.Context, names []string) error {
	for _, batch := range batches(names) {
		req := esapi.SnapshotDeleteRequest{Repository: seg(s.cfg.Repository), Snapshot: segs(batch), MasterTimeout: s.cfg.ESTimeout}
		if err := s.write(ctx, req, nil); err != nil {
			return fmt.Errorf("delete snapshots %s: %w", strings.Join(batch, ","), err)
		}
	}
	return nil
}

// restoreBody is the body of a snapshot restore; only a drill's renames its indices and sets
// their settings (restoreToTemporary).
type restoreBody struct {
	Indices            []string       `json:"indices"`
	IncludeGlobalState bool           `json:"include_global_state"`
	IncludeAliases     bool           `json:"include_aliases"`
	RenamePattern      string         `json:"rename_pattern,omitempty"`
	RenameReplacement  string         `json:"rename_replacement,omitempty"`
	IndexSettings      map[string]any `json:"index_settings,omitempty"`
	// IgnoreIndexSettings drops the write block a safety backup's indices were snapshotted
	// with, so Optimize never starts against read-only indices.
	IgnoreIndexSettings []string `json:"ignore_index_settings"`
}

// restoreSnapshot asks Elasticsearch, once, to start restoring exactly these indices of one
// snapshot with their aliases and without global state.
func (s *server) restoreSnapshot(ctx context.Context, name string, indices []string) error {
	body, err := json.Marshal(restoreBody{Indices: indices, IncludeAliases: true, IgnoreIndexSettings: []string{"index.blocks.write"}})
	if err != nil {
		return err
	}
	req := esapi.SnapshotRestoreRequest{Repository: seg(s.cfg.Repository), Snapshot: seg(name), Body: bytes.NewReader(body), WaitForCompletion: new(false), MasterTimeout: s.cfg.ESTimeout}
	if err := s.restoreWrite(ctx, req, nil); err != nil {
		return fmt.Errorf("restore snapshot %s: %w", name, err)
	}
	return nil
}

// optimizeVersion is the version tag for new backups: OPTIMIZE_VERSION, else the schemaVersion
// Optimize wrote into its metadata index, reduced to X.Y.Z.
func (s *server) optimizeVersion(ctx context.Context) (string, error) {
	if s.cfg.OptimizeVersion != "" {
		return s.cfg.OptimizeVersion, nil
	}
	index := s.cfg.IndexPrefix + "-metadata"
	schema, err := s.schemaVersion(ctx, index)
	if err != nil {
		var ee *esError
		if errors.As(err, &ee) && ee.Status == http.StatusNotFound {
			return "", serverError("cannot tell which Optimize version this backup is of: document 1 of index %s not found (%s); start Optimize once so it writes it, or set OPTIMIZE_VERSION", index, ee.Reason)
		}
		return "", fmt.Errorf("read Optimize version from %s: %w", index, err)
	}
	version := versionPattern.FindString(schema)
	if version == "" {
		return "", serverError("cannot tell which Optimize version this backup is of: %s has schemaVersion %q, not a version; set OPTIMIZE_VERSION", index, schema)
	}
	return version, nil
}

// snapshotsSize is the total size of these snapshots' files, from the snapshot status API.
func (s *server) snapshotsSize(ctx context.Context, names []string) (int64, error) {
	var status struct {
		Snapshots []struct {
			Stats struct {
				Total struct {
					Size int64 `json:"size_in_bytes"`
				} `json:"total"`
			} `json:"stats"`
		} `json:"snapshots"`
	}
	req := esapi.SnapshotStatusRequest{Repository: seg(s.cfg.Repository), Snapshot: segs(names), FilterPath: []string{"snapshots.stats.total.size_in_bytes"}}
	if err := s.read(ctx, req, &status); err != nil {
		return 0, fmt.Errorf("read the size of the backup's snapshots: %w", err)
	}
	var size int64
	for _, sn := range status.Snapshots {
		size += sn.Stats.Total.Size
	}
	return size, nil
}

// restoreShards is the shard count of a finished restore.
type restoreShards struct {
	Total      int `json:"total"`
	Failed     int `json:"failed"`
	Successful int `json:"successful"`
}

// restoreToTemporary restores exactly these indices of one snapshot under prefix+name and
// waits for Elasticsearch to finish (up to OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT): without
// aliases (Optimize's must keep pointing at the live indices), without replicas.
func (s *server) restoreToTemporary(ctx context.Context, snapshot string, indices []string, prefix string) (restoreShards, error) {
	body, err := json.Marshal(restoreBody{
		Indices: indices, RenamePattern: "(.+)", RenameReplacement: prefix + "$1",
		// Elasticsearch refuses to drop auto_expand_replicas on restore, but lets it be turned off.
		IndexSettings:       map[string]any{"index.number_of_replicas": 0, "index.auto_expand_replicas": "false"},
		IgnoreIndexSettings: []string{"index.blocks.write"},
	})
	if err != nil {
		return restoreShards{}, err
	}
	req := esapi.SnapshotRestoreRequest{Repository: seg(s.cfg.Repository), Snapshot: seg(snapshot), Body: bytes.NewReader(body), WaitForCompletion: new(true), MasterTimeout: s.cfg.ESTimeout}
	var answer struct {
		Snapshot struct{ Shards restoreShards }
	}
	if err := s.esCall(ctx, s.cfg.RestoreWaitTimeout, s.es.restore, req, &answer); err != nil {
		return restoreShards{}, fmt.Errorf("restore snapshot %s to temporary indices: %w", snapshot, err)
	}
	return answer.Snapshot.Shards, nil
}

// schemaVersion is the schemaVersion that Optimize wrote into document 1 of a metadata index.
func (s *server) schemaVersion(ctx context.Context, index string) (string, error) {
	var doc struct {
		Source struct{ SchemaVersion string } `json:"_source"`
	}
	err := s.read(ctx, esapi.GetRequest{Index: seg(index), DocumentID: "1"}, &doc)
	return doc.Source.SchemaVersion, err
}
