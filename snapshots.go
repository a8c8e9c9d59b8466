package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// This file holds every call the sidecar makes to Elasticsearch, all through esCall.

// errESUnreachable marks a request that got no answer from Elasticsearch (refused, reset,
// timed out). Optimize 3.9's routes report it as 500, 3.10+ routes as 502.
var errESUnreachable = errors.New("elasticsearch could not be reached")

// esError is an error answer from Elasticsearch, decoded from its error body.
type esError struct {
	Status int
	Type   string
	Reason string
}

func (e *esError) Error() string {
	return fmt.Sprintf("Elasticsearch answered %d %s: %s", e.Status, e.Type, e.Reason)
}

// esErrorBody is the shape of Elasticsearch's error answers.
type esErrorBody struct {
	Error struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
	Status int `json:"status"`
}

// esCall runs one Elasticsearch request with the per-call deadline, closes its body, turns
// error answers into *esError and transport failures into errESUnreachable, and decodes a
// successful JSON answer into target (unless target is nil).
func (s *server) esCall(ctx context.Context, req esapi.Request, target any) error {
	return s.esCallWith(ctx, s.es, req, target)
}

// restoreCall is esCall with the restore credentials, for the calls that change indices.
func (s *server) restoreCall(ctx context.Context, req esapi.Request, target any) error {
	return s.esCallWith(ctx, s.restoreES, req, target)
}

// esCallWith is esCall through a given client.
func (s *server) esCallWith(ctx context.Context, client esapi.Transport, req esapi.Request, target any) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ESTimeout)
	defer cancel()
	res, err := req.Do(ctx, client)
	if err != nil {
		return fmt.Errorf("%w: %v", errESUnreachable, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%w: reading the answer: %v", errESUnreachable, err)
	}
	if res.IsError() {
		var eb esErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error.Type == "" {
			return &esError{Status: res.StatusCode, Type: http.StatusText(res.StatusCode), Reason: strings.TrimSpace(string(body))}
		}
		return &esError{Status: res.StatusCode, Type: eb.Error.Type, Reason: eb.Error.Reason}
	}
	if target == nil {
		return nil
	}
	if err := json.Unmarshal(body, target); err != nil {
		return fmt.Errorf("decoding Elasticsearch's answer: %w", err)
	}
	return nil
}

// snapshot is one Elasticsearch snapshot as the get-snapshots API reports it.
type snapshot struct {
	Name        string            `json:"snapshot"`
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

// snapshotFields limits answers to what the sidecar reads: it keeps the answers small when a
// repository holds thousands of snapshots.
var snapshotFields = []string{
	"snapshots.snapshot", "snapshots.state", "snapshots.reason", "snapshots.start_time_in_millis",
	"snapshots.end_time_in_millis", "snapshots.indices", "snapshots.metadata", "snapshots.failures", "snapshots.shards",
	"next", "failures",
}

// listFields are the fields listing needs: without the index lists and metadata, which
// dominate the size of a page.
var listFields = []string{
	"snapshots.snapshot", "snapshots.state", "snapshots.reason", "snapshots.start_time_in_millis",
	"snapshots.end_time_in_millis", "snapshots.failures", "next", "failures",
}

// getSnapshotsAnswer is the get-snapshots answer. Elasticsearch reports a missing repository
// inside a 200 answer, in failures, not as an error status.
type getSnapshotsAnswer struct {
	Snapshots []snapshot                 `json:"snapshots"`
	Next      string                     `json:"next"`
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

// snapshotNamePattern parses the names Optimize and this sidecar give snapshots:
// camunda_optimize_{id}_{version}_part_{n}_of_{m}. IDs never contain '_', so the ID ends at the
// first '_' after the prefix.
var snapshotNamePattern = regexp.MustCompile(`^camunda_optimize_([^_]+)_([^_]+)_part_(\d+)_of_(\d+)$`)

// getSnapshots returns the snapshots whose names match pattern (a name or a wildcard), one
// page of size at most size (0: no limit) after the cursor after, newest first, with the
// fields named in fields.
func (s *server) getSnapshots(ctx context.Context, pattern string, size int, after string, fields []string) (getSnapshotsAnswer, error) {
	req := esapi.SnapshotGetRequest{
		Repository: s.cfg.Repository,
		Snapshot:   []string{pattern},
		Sort:       "start_time",
		Order:      "desc",
		After:      after,
		FilterPath: fields,
	}
	if size > 0 {
		req.Size = &size
	}
	var answer getSnapshotsAnswer
	if err := s.esCall(ctx, req, &answer); err != nil {
		return answer, fmt.Errorf("get snapshots %s: %w", pattern, err)
	}
	for _, raw := range answer.Failures {
		var failure struct{ Type, Reason string }
		_ = json.Unmarshal(raw, &failure)
		status := http.StatusInternalServerError
		if failure.Type == "repository_missing_exception" {
			status = http.StatusNotFound
		}
		return answer, fmt.Errorf("get snapshots %s: %w", pattern, &esError{Status: status, Type: failure.Type, Reason: failure.Reason})
	}
	return answer, nil
}

// backupSnapshots returns every snapshot of the backup with this ID: one request.
func (s *server) backupSnapshots(ctx context.Context, id string) ([]snapshot, error) {
	answer, err := s.getSnapshots(ctx, snapshotPrefix(id)+"*", 0, "", snapshotFields)
	if err != nil {
		return nil, err
	}
	return answer.Snapshots, nil
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
	BackupID  string `json:"backupId"`
	Version   string `json:"version"`
	PartNo    int    `json:"partNo"`
	PartCount int    `json:"partCount"`
	CreatedBy string `json:"createdBy"`
}

// startSnapshot asks Elasticsearch to start a snapshot of exactly these indices and returns as
// soon as it is accepted.
func (s *server) startSnapshot(ctx context.Context, name string, indices []string, meta snapshotMetadata) error {
	if len(indices) == 0 {
		// An empty list would snapshot the whole cluster.
		return fmt.Errorf("create snapshot %s: refusing to snapshot an empty index list", name)
	}
	body, err := json.Marshal(snapshotRequest{
		Indices:            indices,
		IncludeGlobalState: false,
		FeatureStates:      []string{"none"},
		Metadata:           meta,
	})
	if err != nil {
		return err
	}
	wait := false
	req := esapi.SnapshotCreateRequest{Repository: s.cfg.Repository, Snapshot: name, Body: bytes.NewReader(body), WaitForCompletion: &wait}
	if err := s.esCall(ctx, req, nil); err != nil {
		return fmt.Errorf("create snapshot %s: %w", name, err)
	}
	return nil
}

// deleteSnapshots deletes exactly these snapshots (never a pattern) and returns once
// Elasticsearch acknowledged; a running snapshot is aborted.
func (s *server) deleteSnapshots(ctx context.Context, names []string) error {
	req := esapi.SnapshotDeleteRequest{Repository: s.cfg.Repository, Snapshot: names}
	if err := s.esCall(ctx, req, nil); err != nil {
		return fmt.Errorf("delete snapshots %s: %w", strings.Join(names, ","), err)
	}
	return nil
}

// importIndexNames are the Optimize indices that go into part 1 of a backup.
var importIndexNames = []string{"import-index", "timestamp-based-import-index", "position-based-import-index"}

// resolvedIndex is one index as the resolve-index API reports it.
type resolvedIndex struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases"`
}

// optimizeIndices returns the physical indices of the Optimize prefix, split into part 1 (the
// import indices) and part 2 (every other index of the prefix), as they exist right now.
func (s *server) optimizeIndices(ctx context.Context) (part1, part2 []string, err error) {
	req := esapi.IndicesResolveIndexRequest{
		Name:            []string{s.cfg.IndexPrefix + "-*"},
		ExpandWildcards: "all",
		FilterPath:      []string{"indices.name", "indices.aliases"},
	}
	var answer struct {
		Indices []resolvedIndex `json:"indices"`
	}
	if err := s.esCall(ctx, req, &answer); err != nil {
		return nil, nil, fmt.Errorf("resolve indices %s-*: %w", s.cfg.IndexPrefix, err)
	}
	for _, ix := range answer.Indices {
		if isImportIndex(s.cfg.IndexPrefix, ix) {
			part1 = append(part1, ix.Name)
		} else {
			part2 = append(part2, ix.Name)
		}
	}
	return part1, part2, nil
}

// isImportIndex tells whether an index is one of Optimize's import indices, by its alias or by
// its physical name {prefix}-{name}_v{N}.
func isImportIndex(prefix string, ix resolvedIndex) bool {
	for _, name := range importIndexNames {
		alias := prefix + "-" + name
		if ix.Name == alias || strings.HasPrefix(ix.Name, alias+"_v") {
			return true
		}
		for _, a := range ix.Aliases {
			if a == alias {
				return true
			}
		}
	}
	return false
}

// optimizeVersion is the version tag for new backups: OPTIMIZE_VERSION, else the schemaVersion
// Optimize wrote into its metadata index, reduced to X.Y.Z.
func (s *server) optimizeVersion(ctx context.Context) (string, error) {
	if s.cfg.OptimizeVersion != "" {
		return s.cfg.OptimizeVersion, nil
	}
	index := s.cfg.IndexPrefix + "-metadata"
	var doc struct {
		Source struct {
			SchemaVersion string `json:"schemaVersion"`
		} `json:"_source"`
	}
	if err := s.esCall(ctx, esapi.GetRequest{Index: index, DocumentID: "1"}, &doc); err != nil {
		var ee *esError
		if errors.As(err, &ee) && ee.Status == http.StatusNotFound {
			return "", fmt.Errorf("%w: document 1 of index %s not found (%s); start Optimize once so it writes it, or set OPTIMIZE_VERSION", errNoVersion, index, ee.Reason)
		}
		return "", fmt.Errorf("read Optimize version from %s: %w", index, err)
	}
	version := versionPattern.FindString(doc.Source.SchemaVersion)
	if version == "" {
		return "", fmt.Errorf("%w: %s has schemaVersion %q, not a version; set OPTIMIZE_VERSION", errNoVersion, index, doc.Source.SchemaVersion)
	}
	return version, nil
}

// errNoVersion means the version tag for a new backup could not be determined.
var errNoVersion = errors.New("cannot tell which Optimize version this backup is of")
