package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// catalogueQuery is the query of a catalogue read (see catalogue).
func catalogueQuery() string {
	q := url.Values{"verbose": {"false"}, "ignore_unavailable": {"true"}, "filter_path": {strings.Join(catalogueFields, ",")}}
	return "?" + q.Encode()
}

// namedQuery is the query of a read of snapshots by name with these fields (see snapshotsNamed).
func namedQuery(fields []string) string {
	q := url.Values{"ignore_unavailable": {"true"}, "filter_path": {strings.Join(fields, ",")}}
	return "?" + q.Encode()
}

// catalogueBackups are the backups TestRecordCatalogue takes, oldest first: whose metadata
// (prefix "" for none, as Optimize's own snapshots) and which parts.
var catalogueBackups = []struct {
	id, prefix string
	parts      int
}{
	{"3", "optimize", 2},
	{"21", "", 2},             // Optimize-made: no metadata, decided by its indices
	{"7", "optimize", 1},      // part 1 only: INCOMPLETE once the grace is over
	{"5", "optimize-east", 2}, // another installation's
	{"10", "optimize", 2},
}

// TestRecordCatalogue records what the scrape and a list with ?limit read (make record): the
// catalogue of a repository of five backups (catalogueBackups), of an empty one and of one
// that is not registered, the facts of every snapshot read by name, and the two newest
// backups read by name as the list reports them.
func TestRecordCatalogue(t *testing.T) {
	r := recordingES(t)
	repo := "record-catalogue-repo"
	r.newRepo(repo)
	var names []string
	for _, b := range catalogueBackups {
		indices := [2]string{"import-index_v3", "metadata_v3"}
		prefix := b.prefix
		if prefix == "" {
			prefix = "optimize"
		}
		for part := 1; part <= b.parts; part++ {
			meta := ""
			if b.prefix != "" {
				meta = fmt.Sprintf(`,"metadata":{"version":"3.9.0","partNo":%d,"partCount":2,"createdBy":"optimize-backup","indexPrefix":%q}`, part, b.prefix)
			}
			name := snapshotName(b.id, "3.9.0", part)
			r.must("PUT", "/_snapshot/"+repo+"/"+name+"?wait_for_completion=true",
				fmt.Sprintf(`{"indices":[%q],"include_global_state":false%s}`, prefix+"-"+indices[part-1], meta))
			names = append(names, name)
		}
		// Elasticsearch's clock ticks every 200 ms: each backup starts on a tick of its own.
		time.Sleep(250 * time.Millisecond)
	}
	r.save("catalogue", "the catalogue of backups 3, 21 (Optimize's, no metadata), 7 (part 1 only), 5 (optimize-east's) and 10, taken in that order", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+catalogueQuery(), "")
	r.save("catalogue-facts", "the facts of every snapshot of the catalogue, read by name", "GET", "/_snapshot/"+repo+"/"+strings.Join(slices.Sorted(slices.Values(names)), ",")+namedQuery(factsFields), "")
	newest := []string{snapshotName("10", "3.9.0", 1), snapshotName("10", "3.9.0", 2), snapshotName("5", "3.9.0", 1), snapshotName("5", "3.9.0", 2)}
	r.save("catalogue-newest-2", "backups 10 and 5, the two newest, read by name as the list reports them", "GET", "/_snapshot/"+repo+"/"+strings.Join(newest, ",")+namedQuery(listFields), "")
	recordFacts(r, repo, names)
	empty := "record-catalogue-empty-repo"
	r.newRepo(empty)
	r.save("catalogue-empty", "the catalogue of a repository without backups", "GET", "/_snapshot/"+empty+"/camunda_optimize_*"+catalogueQuery(), "")
	r.save("catalogue-missing-repo", "the catalogue of a repository that is not registered: a 200 with failures", "GET", "/_snapshot/no-such-repo/camunda_optimize_*"+catalogueQuery(), "")
}

// factsQuery is the query of a multi-get or a bulk request of facts documents (factstore.go).
func factsQuery(fields []string, bulk bool) string {
	q := url.Values{"filter_path": {strings.Join(fields, ",")}}
	if bulk {
		q.Set("refresh", "false")
	}
	return "?" + q.Encode()
}

// recordFacts records the facts documents of these snapshots of repo in the jobs index, with
// the sidecar's own bodies: a multi-get without a jobs index, their storing, a multi-get that
// finds them, and the deleting of backup 7's; then backup 7 deleted, and the catalogue.
func recordFacts(r realES, repo string, names []string) {
	jobs := "/camunda-optimize-backup-jobs"
	r.do("DELETE", jobs, "")
	r.t.Cleanup(func() { r.do("DELETE", jobs, "") })
	cfg := testConfig(r.url)
	cfg.Repository = repo
	srv := newTestServer(r.t, cfg)
	read, err := srv.snapshotsNamed(context.Background(), slices.Sorted(slices.Values(names)), factsFields)
	if err != nil || len(read) != len(names) {
		r.t.Fatalf("read the facts of %v: %v (got %d)", names, err, len(read))
	}
	// Asked for in the catalogue's order, as the sidecar does: the answer is in the order asked.
	entries, err := srv.catalogue(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	var learned []storedFacts
	var seven []string
	for _, sn := range read {
		learned = append(learned, srv.factsOf(sn).stored(sn))
		if id, _, _, _, _ := parseSnapshotName(sn.Name); id == "7" {
			seven = append(seven, sn.UUID)
		}
	}
	mget, bulk := jobs+"/_mget"+factsQuery(factsMgetFields, false), jobs+"/_bulk"+factsQuery(factsBulkFields, true)
	r.save("facts-mget-no-index", "the facts documents of the catalogue's snapshots, without a jobs index", "POST", mget, string(srv.factsMgetBody(entries)))
	r.must("PUT", jobs, `{"settings":{"number_of_shards":1,"auto_expand_replicas":"0-1","hidden":true}}`)
	r.save("facts-mget-none", "the facts documents of the catalogue's snapshots, none stored yet", "POST", mget, string(srv.factsMgetBody(entries)))
	r.save("facts-bulk-stored", "the facts of the catalogue's snapshots, stored", "POST", bulk, bulkBody(srv, learned, nil))
	r.save("facts-mget-found", "the facts documents of the catalogue's snapshots, all stored", "POST", mget, string(srv.factsMgetBody(entries)))
	r.save("facts-bulk-deleted", "the facts document of backup 7's part 1 deleted, and one that does not exist", "POST", bulk, bulkBody(srv, nil, append(seven, "no-such-uuid")))
	r.must("DELETE", "/_snapshot/"+repo+"/"+snapshotName("7", "3.9.0", 1), "")
	r.save("catalogue-7-deleted", "the catalogue once backup 7 is deleted", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+catalogueQuery(), "")
}

// saveList records what listing the backups of repo reads (backupsNamed): the catalogue as
// name-catalogue, and the snapshots of the backups keep accepts (nil: all), by name, with these
// fields, as name-named.
func (r realES) saveList(name, note, repo string, keep func(id string) bool, fields []string) {
	r.t.Helper()
	r.save(name+"-catalogue", note+": the catalogue", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+catalogueQuery(), "")
	var catalogue struct{ Snapshots []catalogueEntry }
	_, b := r.do("GET", "/_snapshot/"+repo+"/camunda_optimize_*"+catalogueQuery(), "")
	if err := json.Unmarshal(b, &catalogue); err != nil {
		r.t.Fatal(err)
	}
	var names []string
	for _, sn := range catalogue.Snapshots {
		if id, _, _, _, ok := parseSnapshotName(sn.Name); ok && (keep == nil || keep(id)) {
			names = append(names, sn.Name)
		}
	}
	slices.Sort(names)
	r.save(name+"-named", note+": its snapshots read by name", "GET", "/_snapshot/"+repo+"/"+strings.Join(segs(names), ",")+namedQuery(fields), "")
}

// bulkBody is the body of the bulk request that stores these facts and deletes the documents of
// the snapshots gone.
func bulkBody(srv *server, save []storedFacts, gone []string) string {
	var body bytes.Buffer
	item := srv.factsBulkItem(save, gone)
	for i := range len(save) + len(gone) {
		body.Write(item(i))
	}
	return body.String()
}
