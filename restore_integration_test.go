package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// indexPrint is what a restore must bring back of one index: its documents and its aliases.
type indexPrint struct {
	Docs    int
	Hash    string // sha256 over every document's _id and _source, in _id order
	Aliases []string
}

// fingerprint reads every index of the prefix: document count, a hash of all documents and
// the aliases.
func (es realES) fingerprint(prefix string) map[string]indexPrint {
	es.t.Helper()
	var resolved struct {
		Indices []struct {
			Name    string   `json:"name"`
			Aliases []string `json:"aliases"`
		} `json:"indices"`
	}
	json.Unmarshal(es.must("GET", "/_resolve/index/"+prefix+"-*?expand_wildcards=all", ""), &resolved)
	out := map[string]indexPrint{}
	for _, ix := range resolved.Indices {
		var answer struct {
			Hits struct {
				Hits []struct {
					ID     string          `json:"_id"`
					Source json.RawMessage `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		json.Unmarshal(es.must("GET", "/"+ix.Name+"/_search?size=10000&track_total_hits=true", ""), &answer)
		hits := answer.Hits.Hits
		sort.Slice(hits, func(i, j int) bool { return hits[i].ID < hits[j].ID })
		h := sha256.New()
		for _, hit := range hits {
			fmt.Fprintf(h, "%s\x00%s\x00", hit.ID, hit.Source)
		}
		var count struct{ Count int }
		json.Unmarshal(es.must("GET", "/"+ix.Name+"/_count", ""), &count)
		if count.Count != len(hits) {
			es.t.Fatalf("index %s: %d documents but read %d (raise the search size)", ix.Name, count.Count, len(hits))
		}
		aliases := append([]string{}, ix.Aliases...)
		sort.Strings(aliases)
		out[ix.Name] = indexPrint{Docs: len(hits), Hash: hex.EncodeToString(h.Sum(nil)), Aliases: aliases}
	}
	return out
}

// testInstallation is the rule of the test data (load-data.sh): optimize, next to the nested
// installation optimize-east and the foreign optimize-logs-2026.11.
var testInstallation = newInstallation("optimize", []string{"optimize-east"})

// installationPrint is the fingerprint of the optimize installation's indices only.
func (es realES) installationPrint() map[string]indexPrint {
	es.t.Helper()
	out := map[string]indexPrint{}
	for name, p := range es.fingerprint("optimize") {
		if testInstallation.owns(name) {
			out[name] = p
		}
	}
	return out
}

// othersPrint is the fingerprint of every other index the tests load, that no backup, restore
// or delete of the optimize installation may touch: optimize-east's, the foreign
// optimize-logs-2026.11 and unrelated-logs. It also fails if any index still has a write block.
func (es realES) othersPrint() map[string]indexPrint {
	es.t.Helper()
	out := map[string]indexPrint{}
	for name, p := range es.fingerprint("optimize") {
		if !testInstallation.owns(name) {
			out[name] = p
		}
	}
	for name, p := range es.fingerprint("unrelated") {
		out[name] = p
	}
	if settings := es.must("GET", "/_all/_settings/index.blocks.write?expand_wildcards=all", ""); strings.Contains(string(settings), `"write":"true"`) {
		es.t.Errorf("an index still has a write block: %s", settings)
	}
	return out
}

// deleteIndices deletes every index of the optimize installation by name, as an operator
// following Optimize's runbook would.
func (es realES) deleteIndices() {
	es.t.Helper()
	var names []string
	for name := range es.installationPrint() {
		names = append(names, name)
	}
	if len(names) > 0 {
		es.must("DELETE", "/"+strings.Join(names, ","), "")
	}
}

// waitRestore polls GET .../restore until the job has ended (COMPLETED or FAILED) and returns it.
func (s sidecar) waitRestore(id string) restoreJob {
	s.t.Helper()
	return s.waitJob(id, "an ended job", func(job restoreJob) bool { return !job.active() })
}

// checkRestore runs the end-to-end restore proof on one cluster: back up, fingerprint, delete,
// restore through the API, compare (zero documents lost or changed, aliases back); then the
// same over live, changed indices with replaceExisting, and the safety backup restored in turn.
func checkRestore(t *testing.T, es realES) {
	repo := es.newRepo("restore")
	sc := startSidecar(t, es.sidecarEnv(repo))
	before := es.installationPrint()
	others := es.othersPrint()
	if len(others) < 14 {
		t.Fatalf("got %d indices of other installations and foreign ones; want optimize-east's, optimize-logs-2026.11 and unrelated-logs", len(others))
	}
	if len(before) < 9 {
		t.Fatalf("got %d optimize indices; want the loaded data set", len(before))
	}
	if status, body := sc.call("POST", "/actuator/backups", `{"backupId": 1}`); status != 202 {
		t.Fatalf("create: got %d %s", status, body)
	}
	sc.waitState("1", stateCompleted)

	// With the indices still there: refused, every failed check named, nothing changed.
	status, body := sc.call("POST", "/actuator/backups/1/restore", "")
	if status != 409 || !strings.Contains(string(body), "replaceExisting") {
		t.Errorf("restore over existing indices: got %d %s; want 409 naming the way out", status, body)
	}
	status, body = sc.call("POST", "/actuator/backups/1/restore", `{"dryRun": true}`)
	if status != 200 || !strings.Contains(string(body), `"wouldRestore":false`) {
		t.Errorf("dry run: got %d %s; want 200 with wouldRestore false", status, body)
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Fatalf("refused restore changed data (-before +after):\n%s", diff)
	}

	// The runbook: no Optimize index left, then restore.
	es.deleteIndices()
	if status, body := sc.call("POST", "/actuator/backups/1/restore", ""); status != 202 {
		t.Fatalf("restore: got %d %s; want 202", status, body)
	}
	if job := sc.waitRestore("1"); job.State != restoreCompleted {
		t.Fatalf("restore: got %+v; want COMPLETED", job)
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Fatalf("restored data differs (-backed up +restored):\n%s", diff)
	}

	// Over live indices that changed since the backup: replaceExisting.
	es.must("PUT", "/optimize-dashboard/_doc/added-after-backup?refresh=true", `{"kind":"dashboard","name":"new"}`)
	changed := es.installationPrint()
	status, body = sc.call("POST", "/actuator/backups/1/restore", `{"replaceExisting": true}`)
	if status != 202 {
		t.Fatalf("restore with replaceExisting: got %d %s; want 202", status, body)
	}
	job := sc.waitRestore("1")
	if job.State != restoreCompleted || job.SafetyBackupID == nil {
		t.Fatalf("restore with replaceExisting: got %+v; want COMPLETED with a safety backup", job)
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Fatalf("data after replace differs from the backup (-backed up +restored):\n%s", diff)
	}
	safety := *job.SafetyBackupID
	if got := sc.state(safety); got != stateCompleted {
		t.Fatalf("safety backup %s: got %s; want COMPLETED", safety, got)
	}

	// The safety backup holds the changed data and restores it.
	if status, body := sc.call("POST", "/actuator/backups/"+safety+"/restore", `{"replaceExisting": true}`); status != 202 {
		t.Fatalf("restore safety backup: got %d %s", status, body)
	}
	if job := sc.waitRestore(safety); job.State != restoreCompleted {
		t.Fatalf("restore safety backup: got %+v; want COMPLETED", job)
	}
	if diff := cmp.Diff(changed, es.installationPrint()); diff != "" {
		t.Fatalf("data from the safety backup differs (-live +restored):\n%s", diff)
	}
	// Nothing of another installation, nor a foreign index, was touched, and no write block is
	// left anywhere.
	if diff := cmp.Diff(others, es.othersPrint()); diff != "" {
		t.Errorf("indices outside the installation changed (-before +after):\n%s", diff)
	}
	// Leave the data as the other tests expect it.
	es.must("DELETE", "/optimize-dashboard/_doc/added-after-backup?refresh=true", "")
}

// TestIntegrationRestore proves a restore through the API loses and changes no document, on
// the single node of the test run.
func TestIntegrationRestore(t *testing.T) {
	checkRestore(t, needES(t))
}

// TestIntegrationRestoreThreeNodes starts a 3-node cluster of its own (testenv/es-start.sh
// ES_NODES=3), checks all three joined one cluster, loads data and runs the same proof.
func TestIntegrationRestoreThreeNodes(t *testing.T) {
	es := startOwnES(t, "9280", 3, 3000)
	var health struct {
		NumberOfNodes int    `json:"number_of_nodes"`
		ClusterName   string `json:"cluster_name"`
	}
	json.Unmarshal(es.must("GET", "/_cluster/health", ""), &health)
	if health.NumberOfNodes != 3 {
		t.Fatalf("got %d nodes in cluster %s; want 3", health.NumberOfNodes, health.ClusterName)
	}
	checkRestore(t, es.realES)
}
