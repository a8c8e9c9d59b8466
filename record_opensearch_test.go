package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRecordRoot records GET / of the node (testdata/es/root.json, or on OpenSearch
// testdata/opensearch/root.json): what checkProduct reads to tell the products apart.
func TestRecordRoot(t *testing.T) {
	if !*record {
		t.Skip("re-recording only with -record (make record)")
	}
	r := realES{t: t, url: os.Getenv("OPTIMIZE_BACKUP_TEST_ES_URL"), runDir: os.Getenv("OPTIMIZE_BACKUP_TEST_ES_RUN_DIR")}
	if r.url == "" {
		t.Fatal("set OPTIMIZE_BACKUP_TEST_ES_URL (testenv/with-es.sh does)")
	}
	product := "Elasticsearch: 405, as the integ-test distribution has no rest-root module, with X-Elastic-Product: Elasticsearch as every answer (not recorded; the fake sets it)"
	if testDB() == databaseOpenSearch {
		product = "OpenSearch: version.distribution opensearch, no X-Elastic-Product header"
	}
	r.save("root", "GET / of the node, "+product, "GET", "/", "")
}

// openSearchQuery is the query the sidecar sends OpenSearch to get snapshots: only the fields,
// as OpenSearch's get-snapshots refuses sort, order, size and after (see getSnapshots).
func openSearchQuery(fields []string) string {
	return "?" + url.Values{"filter_path": {strings.Join(fields, ",")}}.Encode()
}

// TestRecordOpenSearch records, from a real OpenSearch node (DB=opensearch testenv/with-es.sh
// go test -run TestRecordOpenSearch -record), the answers in which OpenSearch differs from
// Elasticsearch, and the others the OpenSearch golden tests need, into testdata/opensearch.
func TestRecordOpenSearch(t *testing.T) {
	if !*record || testDB() != databaseOpenSearch {
		t.Skip("re-recording only with -record on OpenSearch (DB=opensearch testenv/with-es.sh)")
	}
	r := realES{t: t, url: os.Getenv("OPTIMIZE_BACKUP_TEST_ES_URL"), runDir: os.Getenv("OPTIMIZE_BACKUP_TEST_ES_RUN_DIR")}
	repo := r.newRepo("record-os-repo")
	all, one, state := openSearchQuery(listFields), openSearchQuery(snapshotFields), openSearchQuery(stateFields)

	// A pattern that matches nothing: 404 snapshot_missing_exception (Elasticsearch: []), but
	// for the catalogue, read with ignore_unavailable.
	r.save("list-empty", "no snapshot matches camunda_optimize_*: a 404, where Elasticsearch answers an empty list", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+all, "")
	r.save("catalogue-empty", "the catalogue of a repository without backups (ignore_unavailable: a 200)", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+catalogueQuery(), "")
	r.save("get-unknown", "no snapshot of backup 404: a 404", "GET", "/_snapshot/"+repo+"/camunda_optimize_404_*"+one, "")
	r.save("state-unknown", "no snapshot of backup 404, as GET reads it: a 404", "GET", "/_snapshot/"+repo+"/camunda_optimize_404_*"+state, "")
	// A missing repository: a 404 (Elasticsearch: a 200 with failures).
	r.save("state-missing-repo", "the repository is not registered, as GET reads it: a 404 repository_missing_exception", "GET", "/_snapshot/no-such-repo/camunda_optimize_1_*"+state, "")
	r.save("list-missing-repo", "listing a repository that is not registered: a 404 repository_missing_exception", "GET", "/_snapshot/no-such-repo/camunda_optimize_*"+all, "")
	r.save("catalogue-missing-repo", "the catalogue of a repository that is not registered: a 404 repository_missing_exception", "GET", "/_snapshot/no-such-repo/camunda_optimize_*"+catalogueQuery(), "")
	// Sorting or paging parameters: refused.
	r.save("list-sorted-refused", "get-snapshots with Elasticsearch's sort, order and size: refused", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+snapshotQuery(1000, ""), "")

	r.save("metadata", "Optimize's metadata document", "GET", "/optimize-metadata/_doc/1", "")
	r.save("resolve", "the installation's indices and aliases", "GET", "/_resolve/index/optimize-*?expand_wildcards=all&filter_path=indices.name,aliases.name", "")
	snap := func(name, index, id string, part int) {
		r.must("PUT", "/_snapshot/"+repo+"/"+name+"?wait_for_completion=true", fmt.Sprintf(snapshotBody, index, id, part))
	}
	// Backups 1 and 12 complete, 2 with part 1 only; 2 is made first, so newest first is
	// 12, 1, 2 whatever order OpenSearch answers in.
	snap("camunda_optimize_2_3.9.0_part_1_of_2", "optimize-import-index_v3", "2", 1)
	for _, id := range []string{"1", "12"} {
		snap("camunda_optimize_"+id+"_3.9.0_part_1_of_2", "optimize-import-index_v3", id, 1)
		snap("camunda_optimize_"+id+"_3.9.0_part_2_of_2", "optimize-metadata_v3", id, 2)
	}
	r.save("list", "backups 2 (part 1 only), 1 and 12, made in that order: every match in one answer", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+all, "")
	r.save("state-completed", "backup 1: both parts SUCCESS, as GET reads it", "GET", "/_snapshot/"+repo+"/camunda_optimize_1_*"+state, "")
	r.save("get-part1-done-1", "part 1 of backup 1, SUCCESS", "GET", "/_snapshot/"+repo+"/camunda_optimize_1_3.9.0_part_1_of_2"+one, "")

	// Creates: accepted, and refused for a name in use (invalid_snapshot_name_exception,
	// where Elasticsearch has snapshot_name_already_in_use_exception).
	create := "?cluster_manager_timeout=30s&wait_for_completion=false"
	r.save("create-accepted", "start part 1 of backup 6", "PUT", "/_snapshot/"+repo+"/camunda_optimize_6_3.9.0_part_1_of_2"+create, fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "6", 1))
	r.waitDone(repo, "camunda_optimize_6_*")
	r.save("create-in-use-exists", "a second create of an existing snapshot's name", "PUT", "/_snapshot/"+repo+"/camunda_optimize_6_3.9.0_part_1_of_2"+create, fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "6", 1))
	slow := "record-os-slow-repo"
	r.must("PUT", "/_snapshot/"+slow, fmt.Sprintf(`{"type":"fs","settings":{"location":%q,"max_snapshot_bytes_per_sec":"1kb"}}`, filepath.Join(r.runDir, "repo", "slow-"+fmt.Sprint(time.Now().UnixNano()))))
	t.Cleanup(func() { r.do("DELETE", "/_snapshot/"+slow, "") })
	r.must("PUT", "/_snapshot/"+slow+"/camunda_optimize_5_3.9.0_part_1_of_2?wait_for_completion=false", fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "5", 1))
	r.save("create-in-use-running", "a second create of a running snapshot's name", "PUT", "/_snapshot/"+slow+"/camunda_optimize_5_3.9.0_part_1_of_2"+create, fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "5", 1))
	r.must("DELETE", "/_snapshot/"+slow+"/camunda_optimize_5_3.9.0_part_1_of_2", "")
}
