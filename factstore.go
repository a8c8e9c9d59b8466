package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// The facts of finished snapshots (catalogue.go) are also kept in the jobs index, a small
// document each, so that a replica that starts or restarts learns them from documents (one
// multi-get per thousand snapshots) instead of from the blob store (one snapshot_meta task per
// snapshot): its first scrape then costs what every later one does. The documents only save
// reads: one that is missing, unreadable, of another format, or that disagrees with the
// catalogue is read from the snapshot again, and one that cannot be written is logged and left
// to the next replica. A replica deletes the documents of the snapshots it saw deleted; those
// of snapshots deleted while no replica ran stay (a few hundred bytes each).

// factsFormat is the version of the stored facts: a document of another is not trusted.
const factsFormat = 1

// storedFacts is one finished snapshot's facts as the jobs index keeps them
// ("snapshot-facts-{prefix}-{UUID}": Own is this installation's verdict).
type storedFacts struct {
	Format   int    `json:"factsFormat"`
	Snapshot string `json:"snapshot"`
	UUID     string `json:"uuid"`
	State    string `json:"state"`
	Start    int64  `json:"startMillis"`
	End      int64  `json:"endMillis"`
	Own      bool   `json:"own"`
}

// factsDocID is the ID of a snapshot's facts document for this installation.
func (s *server) factsDocID(uuid string) string {
	return "snapshot-facts-" + s.cfg.IndexPrefix + "-" + uuid
}

// factsPerRequest bounds the documents of one multi-get or bulk request (about 200 bytes each).
const factsPerRequest = 1000

// factsMgetFields are what a multi-get of facts keeps of the answer.
var factsMgetFields = []string{"docs.found", "docs._source", "docs.error.type"}

// factsMgetBody is the body of a multi-get of these snapshots' facts documents.
func (s *server) factsMgetBody(entries []catalogueEntry) []byte {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = s.factsDocID(e.UUID)
	}
	body, _ := json.Marshal(map[string][]string{"ids": ids})
	return body
}

// loadStoredFacts returns the stored facts of these finished snapshots that agree with the
// catalogue (same name, UUID and state), by UUID, and whether the jobs index exists. A read that
// fails is logged and returns what was read before it: the snapshots are then read instead.
func (s *server) loadStoredFacts(ctx context.Context, entries []catalogueEntry) (known map[string]snapshotFacts, indexExists bool) {
	known, indexExists = map[string]snapshotFacts{}, true
	for chunk := range slices.Chunk(entries, factsPerRequest) {
		var answer struct {
			Docs []struct {
				Found  bool        `json:"found"`
				Source storedFacts `json:"_source"`
				Error  *struct {
					Type string `json:"type"`
				} `json:"error"`
			} `json:"docs"`
		}
		req := esapi.MgetRequest{Index: seg(s.cfg.JobsIndex), Body: bytes.NewReader(s.factsMgetBody(chunk)), FilterPath: factsMgetFields}
		if err := s.read(ctx, req, &answer); err != nil || len(answer.Docs) != len(chunk) {
			s.log.Warn("cannot read the stored facts of finished snapshots; reading them from the repository instead (let the sidecar's user read the jobs index, OPTIMIZE_BACKUP_JOBS_INDEX)",
				"index", s.cfg.JobsIndex, "err", err, "docs", len(answer.Docs), "asked", len(chunk))
			return known, indexExists
		}
		for i, doc := range answer.Docs {
			e, f := chunk[i], doc.Source
			if doc.Error != nil && doc.Error.Type == "index_not_found_exception" {
				return known, false
			}
			if doc.Found && f.Format == factsFormat && f.Snapshot == e.Name && f.UUID == e.UUID && f.State == e.State {
				known[e.UUID] = snapshotFacts{state: f.State, start: f.Start, end: f.End, own: f.Own}
			}
		}
	}
	return known, indexExists
}

// storeFacts writes the facts of these finished snapshots and deletes the documents of the
// snapshots gone (UUIDs), creating the jobs index first if it does not exist. It is not
// cancelled with ctx (a scrape that timed out has still learned them) and never fails the read
// that learned them: a failure is logged.
func (s *server) storeFacts(ctx context.Context, learned []storedFacts, gone []string, indexExists bool) {
	if len(learned) == 0 && len(gone) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), noteTimeout)
	defer cancel()
	log := s.log.With("index", s.cfg.JobsIndex)
	if !indexExists && len(learned) > 0 {
		if err := s.ensureJobsIndex(ctx); err != nil {
			log.Warn("cannot store the facts of finished snapshots; a replica that starts reads them from the repository", "err", err)
			return
		}
	}
	if err := s.bulk(ctx, s.factsBulkItems(learned, gone)); err != nil {
		log.Warn("cannot store the facts of finished snapshots; a replica that starts reads them from the repository (let the sidecar's user write the jobs index, OPTIMIZE_BACKUP_JOBS_INDEX)", "err", err)
		return
	}
	log.Debug("stored the facts of finished snapshots", "stored", len(learned), "deleted", len(gone))
}

// factsBulkItems are the bulk items that store these facts and delete the documents of the
// snapshots gone.
func (s *server) factsBulkItems(learned []storedFacts, gone []string) [][]byte {
	var items [][]byte
	for _, f := range learned {
		action, _ := json.Marshal(map[string]any{"index": map[string]string{"_id": s.factsDocID(f.UUID)}})
		doc, _ := json.Marshal(f)
		items = append(items, fmt.Appendf(nil, "%s\n%s\n", action, doc))
	}
	for _, uuid := range gone {
		action, _ := json.Marshal(map[string]any{"delete": map[string]string{"_id": s.factsDocID(uuid)}})
		items = append(items, fmt.Appendf(nil, "%s\n", action))
	}
	return items
}

// factsBulkFields are what a bulk request keeps of the answer: the refused items' errors.
var factsBulkFields = []string{"errors", "items.*.error.type", "items.*.error.reason"}

// bulk sends these items (an action line, and a document line for an index) to the jobs index,
// factsPerRequest a request, and fails on the first item Elasticsearch refused (a delete of a
// document that does not exist is not refused).
func (s *server) bulk(ctx context.Context, items [][]byte) error {
	for chunk := range slices.Chunk(items, factsPerRequest) {
		body := bytes.NewBuffer(bytes.Join(chunk, nil))
		var answer struct {
			Errors bool `json:"errors"`
			Items  []map[string]struct {
				Error *struct{ Type, Reason string } `json:"error"`
			} `json:"items"`
		}
		req := esapi.BulkRequest{Index: seg(s.cfg.JobsIndex), Body: body, Refresh: "false", FilterPath: factsBulkFields}
		if err := s.write(ctx, req, &answer); err != nil {
			return err
		}
		for _, item := range answer.Items {
			for action, result := range item {
				if result.Error != nil {
					return fmt.Errorf("%s refused: %s: %s", action, result.Error.Type, result.Error.Reason)
				}
			}
		}
		if answer.Errors {
			return fmt.Errorf("Elasticsearch reported errors in a bulk request to %s", s.cfg.JobsIndex)
		}
	}
	return nil
}
