package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// The facts of finished snapshots (catalogue.go) are also kept in the jobs index, a small
// document each, so that a replica that starts or restarts learns them from documents (one
// multi-get per thousand snapshots) instead of from the blob store (one snapshot_meta task per
// snapshot): its first scrape then costs what every later one does. The documents only save
// reads: one that is missing, unreadable, of another format, or that disagrees with the
// catalogue is read from the snapshot again. What a replica learned from snapshots, and the
// deletions it saw, are sent with each read of the catalogue, within its deadline, until the
// jobs index took them. Documents of snapshots deleted while no replica ran stay (a few hundred
// bytes each), and so do those a delete was refused for (the sidecar's user lacks the delete
// privilege): they are never read again, as no snapshot takes their UUID.

// factsFormat is the version of the stored facts, part of the document IDs, so that two
// versions of the sidecar never read or overwrite each other's documents. Bump it whenever a
// field's meaning changes, including the rules of isOwnSnapshot: the stored own is its verdict.
const factsFormat = 1

// storedFacts is one finished snapshot's facts as the jobs index keeps them
// ("snapshot-facts-{format}-{prefix}-{UUID}": Own is this installation's verdict).
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
	return fmt.Sprintf("snapshot-facts-%d-%s-%s", factsFormat, s.cfg.IndexPrefix, uuid)
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
// catalogue (same name, UUID and state), by UUID, and whether the jobs index is known to exist
// (its answer said so). A read that fails is logged and returns what was read before it: the
// snapshots are then read instead.
func (s *server) loadStoredFacts(ctx context.Context, entries []catalogueEntry) (known map[string]snapshotFacts, indexExists bool) {
	known = map[string]snapshotFacts{}
	for chunk := range slices.Chunk(entries, factsPerRequest) {
		var answer struct {
			Docs []struct {
				Found  bool            `json:"found"`
				Source json.RawMessage `json:"_source"`
				Error  *struct {
					Type string `json:"type"`
				} `json:"error"`
			} `json:"docs"`
		}
		req := esapi.MgetRequest{Index: seg(s.cfg.JobsIndex), Body: bytes.NewReader(s.factsMgetBody(chunk)), FilterPath: factsMgetFields}
		err := s.read(ctx, req, &answer)
		if err == nil && len(answer.Docs) != len(chunk) {
			err = fmt.Errorf("the jobs index answered %d documents for %d asked", len(answer.Docs), len(chunk))
		}
		if err != nil {
			s.log.Warn("cannot read the stored facts of finished snapshots; reading them from the repository instead (the sidecar's user needs read on OPTIMIZE_BACKUP_JOBS_INDEX)",
				"index", s.cfg.JobsIndex, "err", err)
			return known, false
		}
		for i, doc := range answer.Docs {
			if doc.Error != nil && doc.Error.Type == "index_not_found_exception" {
				return known, false
			}
			var f storedFacts
			e := chunk[i]
			// A document that does not decode, or does not match, is read from the snapshot again.
			if doc.Found && json.Unmarshal(doc.Source, &f) == nil && f.Format == factsFormat && f.Snapshot == e.Name && f.UUID == e.UUID && f.State == e.State {
				known[e.UUID] = snapshotFacts{state: f.State, start: f.Start, end: f.End, own: f.Own}
			}
		}
		indexExists = true
	}
	return known, indexExists
}

// syncFacts stores in the jobs index the facts this replica read from snapshots and deletes the
// documents of the snapshots it saw deleted, creating the jobs index first unless it is known to
// exist. It runs within ctx (the scrape's deadline): what it could not send is sent by the next
// read. A failure is logged, never returned: the read that learned them answers all the same.
func (s *server) syncFacts(ctx context.Context, indexExists bool) {
	save, gone := s.facts.toSync()
	if len(save) == 0 && len(gone) == 0 {
		return
	}
	log := s.log.With("index", s.cfg.JobsIndex)
	if !indexExists && len(save) > 0 {
		if err := s.ensureJobsIndex(ctx); err != nil {
			log.Warn("cannot store the facts of finished snapshots; a replica that starts reads them from the repository", "err", err)
			return
		}
	}
	uuids := make([]string, 0, len(save)+len(gone))
	for _, f := range save {
		uuids = append(uuids, f.UUID)
	}
	uuids = append(uuids, gone...)
	done, err := s.bulk(ctx, len(uuids), s.factsBulkItem(save, gone))
	var taken []string
	for i, ok := range done {
		if ok {
			taken = append(taken, uuids[i])
		}
	}
	s.facts.synced(taken)
	if err != nil {
		log.Warn("cannot store the facts of finished snapshots, or delete those of deleted ones; a replica that starts reads them from the repository (the sidecar's user needs index and delete on OPTIMIZE_BACKUP_JOBS_INDEX)",
			"err", err, "stored_or_deleted", len(taken), "asked", len(uuids))
	}
}

// factsBulkItem returns the bulk item i of storing these facts, then deleting the documents of
// the snapshots gone: an action line, and a document line for an index. Items are made as each
// request is, so that a first read of 20,000 snapshots never holds all of them at once.
func (s *server) factsBulkItem(save []storedFacts, gone []string) func(i int) []byte {
	return func(i int) []byte {
		if i >= len(save) {
			action, _ := json.Marshal(map[string]any{"delete": map[string]string{"_id": s.factsDocID(gone[i-len(save)])}})
			return fmt.Appendf(nil, "%s\n", action)
		}
		action, _ := json.Marshal(map[string]any{"index": map[string]string{"_id": s.factsDocID(save[i].UUID)}})
		doc, _ := json.Marshal(save[i])
		return fmt.Appendf(nil, "%s\n%s\n", action, doc)
	}
}

// factsBulkFields are what a bulk request keeps of the answer: each item's status, in order,
// and the refused ones' errors.
var factsBulkFields = []string{"items.*.status", "items.*.error.type", "items.*.error.reason"}

// bulk sends n items (item(i) for each) to the jobs index, factsPerRequest a request, and
// returns for each whether it is done: carried out, a delete of a document that is not there,
// or refused for good (a 4xx other than 429, returned as err). An item that failed for now (429,
// 5xx, no answer) is not done: it is sent again later.
func (s *server) bulk(ctx context.Context, n int, item func(i int) []byte) (done []bool, err error) {
	done = make([]bool, n)
	for from := 0; from < n; from += factsPerRequest {
		var body bytes.Buffer
		for i := from; i < min(from+factsPerRequest, n); i++ {
			body.Write(item(i))
		}
		var answer struct {
			Items []map[string]struct {
				Status int                            `json:"status"`
				Error  *struct{ Type, Reason string } `json:"error"`
			} `json:"items"`
		}
		req := esapi.BulkRequest{Index: seg(s.cfg.JobsIndex), Body: &body, Refresh: "false", FilterPath: factsBulkFields}
		if callErr := s.write(ctx, req, &answer); callErr != nil {
			return done, callErr
		}
		for j, answered := range answer.Items {
			for action, result := range answered {
				ok := result.Status/100 == 2 || action == "delete" && result.Status == http.StatusNotFound
				refused := !ok && result.Status/100 == 4 && result.Status != http.StatusTooManyRequests
				switch {
				case ok || err != nil:
				case result.Error != nil:
					err = fmt.Errorf("%s answered %d: %s: %s", action, result.Status, result.Error.Type, result.Error.Reason)
				default:
					err = fmt.Errorf("%s answered %d", action, result.Status)
				}
				if k := from + j; k < n {
					done[k] = ok || refused
				}
			}
		}
	}
	return done, err
}
