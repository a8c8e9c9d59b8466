package main

import (
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
	empty := "record-catalogue-empty-repo"
	r.newRepo(empty)
	r.save("catalogue-empty", "the catalogue of a repository without backups", "GET", "/_snapshot/"+empty+"/camunda_optimize_*"+catalogueQuery(), "")
	r.save("catalogue-missing-repo", "the catalogue of a repository that is not registered: a 200 with failures", "GET", "/_snapshot/no-such-repo/camunda_optimize_*"+catalogueQuery(), "")
}
