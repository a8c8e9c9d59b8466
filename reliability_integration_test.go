package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The faults of RELIABILITY.md, each on the real Elasticsearch: a gateway that loses an
// answer, a client that hangs up, a DELETE during a restore, two replicas, a restart mid-
// restore, and an installation with 150 dynamic indices.

// fault is what faultProxy does to one request: wait before forwarding it, and after
// forwarding it answer with gatewayStatus instead of Elasticsearch's answer (0: pass it on).
// With answered set, the proxy closes it once Elasticsearch has answered and holds the answer
// until release is closed (a slow way back).
type fault struct {
	delay         time.Duration
	gatewayStatus int
	answered      chan struct{}
	release       <-chan struct{}
}

// faultProxy stands between a sidecar and the real Elasticsearch, as a gateway would, and
// breaks the requests its rule picks.
type faultProxy struct {
	url  string
	mu   sync.Mutex
	rule func(method, path string) fault
	hits map[string]int // faults applied, by "METHOD path"
}

// newFaultProxy starts a proxy to Elasticsearch at esURL with this rule until the test ends.
func newFaultProxy(t *testing.T, esURL string, rule func(method, path string) fault) *faultProxy {
	p := &faultProxy{rule: rule, hits: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := p.rule(r.Method, r.URL.Path)
		if f != (fault{}) {
			p.mu.Lock()
			p.hits[r.Method+" "+r.URL.Path]++
			p.mu.Unlock()
		}
		time.Sleep(f.delay)
		body, _ := io.ReadAll(r.Body)
		out, err := http.NewRequest(r.Method, esURL+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		res, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		answer, _ := io.ReadAll(res.Body)
		if f.answered != nil {
			close(f.answered)
			<-f.release
		}
		if f.gatewayStatus != 0 {
			// Elasticsearch did the work; the gateway lost its answer.
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(f.gatewayStatus)
			fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", f.gatewayStatus, http.StatusText(f.gatewayStatus))
			return
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		w.Write(answer)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// proxiedEnv is the environment of a sidecar on repository repo that reaches the real
// Elasticsearch only through a fault proxy with this rule.
func (es realES) proxiedEnv(t *testing.T, repo string, rule func(method, path string) fault) (map[string]string, *faultProxy) {
	proxy := newFaultProxy(t, es.url, rule)
	env := es.sidecarEnv(repo)
	env["OPTIMIZE_ELASTICSEARCH_URLS"] = proxy.url
	return env, proxy
}

// applied is how many requests the proxy broke whose "METHOD path" contains part.
func (p *faultProxy) applied(part string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.hits {
		if strings.Contains(k, part) {
			n += v
		}
	}
	return n
}

// job reads the restore job of a backup through the sidecar.
func (s sidecar) job(id string) restoreJob {
	s.t.Helper()
	status, body := s.call("GET", "/actuator/backups/"+id+"/restore", "")
	if status != 200 {
		s.t.Fatalf("restore status of %s: got %d %s; want 200", id, status, body)
	}
	var job restoreJob
	if err := json.Unmarshal(body, &job); err != nil {
		s.t.Fatal(err)
	}
	return job
}

// waitJob polls the restore job until done says so, failing after 3 minutes (a restore on
// three nodes under -race) or when the job ended otherwise.
func (s sidecar) waitJob(id string, what string, done func(restoreJob) bool) restoreJob {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		job := s.job(id)
		if done(job) {
			return job
		}
		if !job.active() || time.Now().After(deadline) {
			reason := ""
			if job.FailureReason != nil {
				reason = *job.FailureReason
			}
			s.t.Fatalf("restore of %s: got %s at step %s (%s); want %s; sidecar log:\n%s", id, job.State, job.Step, reason, what, s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// backupNow creates a backup through the sidecar and waits until it is COMPLETED.
func (s sidecar) backupNow(id string) {
	s.t.Helper()
	if status, body := s.call("POST", "/actuator/backups", `{"backupId": `+id+`}`); status != 202 {
		s.t.Fatalf("create %s: got %d %s; want 202", id, status, body)
	}
	s.waitState(id, stateCompleted)
}

// TestIntegrationGatewayLosesCreateAnswer puts a gateway in front of Elasticsearch that
// forwards the create of part 1 and answers 504: the sidecar must read the snapshot back, see
// its own nonce, answer 202 and finish the backup with two snapshots.
func TestIntegrationGatewayLosesCreateAnswer(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("gateway")
	env, proxy := es.proxiedEnv(t, repo, func(method, path string) fault {
		if method == "PUT" && strings.HasSuffix(path, "_part_1_of_2") {
			return fault{gatewayStatus: http.StatusGatewayTimeout}
		}
		return fault{}
	})
	sc := startSidecar(t, env)
	status, body := sc.call("POST", "/actuator/backups", `{"backupId": 201}`)
	if status != 202 {
		t.Fatalf("create through a gateway that lost the answer: got %d %s; want 202", status, body)
	}
	sc.waitState("201", stateCompleted)
	if got := proxy.applied("_part_1_of_2"); got != 1 {
		t.Errorf("the gateway broke %d creates of part 1; want exactly 1 (sent once, never retried)", got)
	}
	if got := len(es.snapshots(repo, "camunda_optimize_201_*")); got != 2 {
		t.Errorf("got %d snapshots; want 2", got)
	}
}

// TestIntegrationClientHangsUp sends a create and hangs up 0.5 s later, while a slow
// Elasticsearch is still answering the sidecar's first read: the backup must still be made.
func TestIntegrationClientHangsUp(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("hangup")
	env, _ := es.proxiedEnv(t, repo, func(method, path string) fault {
		if method == "GET" && strings.Contains(path, "camunda_optimize_202_") {
			return fault{delay: time.Second}
		}
		return fault{}
	})
	sc := startSidecar(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", sc.url+"/actuator/backups", strings.NewReader(`{"backupId": 202}`))
	req.Header.Set("Content-Type", "application/json")
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("the client got an answer (%s) before hanging up; want it gone first", res.Status)
	}
	deadline := time.Now().Add(time.Minute)
	for len(es.snapshots(repo, "camunda_optimize_202_*")) < 2 || sc.state("202") != stateCompleted {
		if time.Now().After(deadline) {
			t.Fatalf("backup 202 after the client hung up: got %d snapshots, state %s; want 2, COMPLETED", len(es.snapshots(repo, "camunda_optimize_202_*")), sc.state("202"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// slowRecovery is a proxy rule that keeps a restore in its restore steps for a while: every
// _recovery read waits.
func slowRecovery(method, path string) fault {
	if strings.HasSuffix(path, "/_recovery") {
		return fault{delay: 700 * time.Millisecond}
	}
	return fault{}
}

// TestIntegrationDeleteDuringRestore deletes the backup a replace-restore is restoring, and its
// safety backup, while the restore runs: both answer 409, the restore ends COMPLETED and not a
// document is lost; nothing outside the installation changes.
func TestIntegrationDeleteDuringRestore(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("delete-during")
	env, _ := es.proxiedEnv(t, repo, slowRecovery)
	sc := startSidecar(t, env)
	before, others := es.installationPrint(), es.othersPrint()
	sc.backupNow("301")
	sc.backupNow("302")

	if status, body := sc.call("POST", "/actuator/backups/301/restore", `{"replaceExisting": true}`); status != 202 {
		t.Fatalf("restore: got %d %s; want 202", status, body)
	}
	if status, body := sc.call("DELETE", "/actuator/backups/301", ""); status != 409 {
		t.Errorf("DELETE of the backup being restored: got %d %s; want 409", status, body)
	}
	job := sc.waitJob("301", "a safety backup", func(j restoreJob) bool { return j.SafetyBackupID != nil && strings.HasPrefix(j.Step, "restore-part-") })
	if status, body := sc.call("DELETE", "/actuator/backups/"+*job.SafetyBackupID, ""); status != 409 {
		t.Errorf("DELETE of the safety backup during the restore: got %d %s; want 409", status, body)
	}
	// A backup the restore does not need can go meanwhile, and the restore is not disturbed.
	if status, body := sc.call("DELETE", "/actuator/backups/302", ""); status != 204 {
		t.Errorf("DELETE of another backup during the restore: got %d %s; want 204", status, body)
	}
	job = sc.waitJob("301", "COMPLETED", func(j restoreJob) bool { return j.State == restoreCompleted })
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Errorf("data after the restore differs from the backup (-backed up +restored):\n%s", diff)
	}
	if diff := cmp.Diff(others, es.othersPrint()); diff != "" {
		t.Errorf("indices outside the installation changed (-before +after):\n%s", diff)
	}
	if got := len(es.snapshots(repo, "camunda_optimize_301_*")); got != 2 {
		t.Errorf("backup 301 after the refused DELETE: got %d snapshots; want 2", got)
	}
	// Once the restore ended, the safety backup can be deleted.
	if status, body := sc.call("DELETE", "/actuator/backups/"+*job.SafetyBackupID, ""); status != 204 {
		t.Errorf("DELETE of the safety backup after the restore: got %d %s; want 204", status, body)
	}
}

// TestIntegrationTwoReplicasOneRestore sends a restore to two sidecars on one cluster at once:
// exactly one starts it (the job document's atomic create decides), and both report the same
// job until it is COMPLETED.
func TestIntegrationTwoReplicasOneRestore(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("two-replicas")
	a, b := startSidecar(t, es.sidecarEnv(repo)), startSidecar(t, es.sidecarEnv(repo))
	before := es.installationPrint()
	a.backupNow("401")

	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, sc := range []sidecar{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = sc.call("POST", "/actuator/backups/401/restore", `{"replaceExisting": true}`)
		}()
	}
	wg.Wait()
	if !(codes[0] == 202 && codes[1] == 409 || codes[0] == 409 && codes[1] == 202) {
		t.Fatalf("restore sent to both replicas: got %v; want one 202 and one 409", codes)
	}
	ja, jb := a.job("401"), b.job("401")
	if ja.StartTime == nil || jb.StartTime == nil || !ja.StartTime.Equal(*jb.StartTime) || ja.BackupID != jb.BackupID {
		t.Errorf("the replicas report different jobs: %+v and %+v", ja, jb)
	}
	a.waitJob("401", "COMPLETED", func(j restoreJob) bool { return j.State == restoreCompleted })
	if got := b.job("401"); got.State != restoreCompleted {
		t.Errorf("the other replica reports %s; want COMPLETED", got.State)
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Errorf("data after the restore differs (-backed up +restored):\n%s", diff)
	}
}

// TestIntegrationRestartMidRestore stops the sidecar (as SIGTERM does) while it restores, after
// it deleted the indices it replaces, and starts a new one: the new sidecar reports the same
// job, resumes it, and it ends COMPLETED with not a document lost.
func TestIntegrationRestartMidRestore(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("restart")
	env, _ := es.proxiedEnv(t, repo, slowRecovery)
	first := startSidecar(t, env)
	before, others := es.installationPrint(), es.othersPrint()
	first.backupNow("501")
	if status, body := first.call("POST", "/actuator/backups/501/restore", `{"replaceExisting": true}`); status != 202 {
		t.Fatalf("restore: got %d %s; want 202", status, body)
	}
	job := first.waitJob("501", "a restore step", func(j restoreJob) bool { return strings.HasPrefix(j.Step, "restore-part-") })
	first.stop()
	if !strings.Contains(first.logs(), "stopped during the restore") {
		t.Errorf("the stopped sidecar did not log that it handed the job over; logs:\n%s", first.logs())
	}

	second := startSidecar(t, es.sidecarEnv(repo))
	got := second.waitJob("501", "COMPLETED", func(j restoreJob) bool { return j.State == restoreCompleted })
	if got.SafetyBackupID == nil || *got.SafetyBackupID != *job.SafetyBackupID || !got.StartTime.Equal(*job.StartTime) {
		t.Errorf("after the restart: got job %+v; want the same job (safety backup %s)", got, *job.SafetyBackupID)
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Errorf("data after the resumed restore differs (-backed up +restored):\n%s", diff)
	}
	if diff := cmp.Diff(others, es.othersPrint()); diff != "" {
		t.Errorf("indices outside the installation changed (-before +after):\n%s", diff)
	}
}

// TestIntegrationManyIndices backs up and replace-restores an installation with 150 dynamic
// indices, whose names together are far longer than Elasticsearch's 4 KB request line: the
// write block, the delete and the recovery reads go in batches.
func TestIntegrationManyIndices(t *testing.T) {
	es := needES(t)
	prefix := "many"
	es.must("PUT", "/_index_template/many-test", `{"index_patterns":["many-*"],"template":{"settings":{"number_of_shards":1,"number_of_replicas":0}}}`)
	var bulk strings.Builder
	indices := []string{prefix + "-metadata_v3", prefix + "-import-index_v3"}
	fmt.Fprintf(&bulk, "{\"index\":{\"_index\":%q,\"_id\":\"1\"}}\n{\"schemaVersion\":\"3.9.0\"}\n", indices[0])
	fmt.Fprintf(&bulk, "{\"index\":{\"_index\":%q,\"_id\":\"1\"}}\n{\"position\":1}\n", indices[1])
	for i := 0; i < 150; i++ {
		ix := fmt.Sprintf("%s-process-instance-a-rather-long-process-definition-key-%03d_v8", prefix, i)
		indices = append(indices, ix)
		fmt.Fprintf(&bulk, "{\"index\":{\"_index\":%q,\"_id\":\"%d\"}}\n{\"seq\":%d}\n", ix, i, i)
	}
	es.must("POST", "/_bulk?refresh=true", bulk.String())
	t.Cleanup(func() {
		for _, batch := range batches(indices) {
			es.do("DELETE", "/"+strings.Join(batch, ","), "")
		}
		es.do("DELETE", "/_index_template/many-test", "")
	})
	es.must("GET", "/_cluster/health/many-*?wait_for_status=green&timeout=60s", "")
	count := func() int {
		var c struct{ Count int }
		json.Unmarshal(es.must("GET", "/many-*/_count", ""), &c)
		return c.Count
	}
	if got := count(); got != 152 {
		t.Fatalf("loaded %d documents; want 152", got)
	}

	repo := es.newRepo("many")
	env := es.sidecarEnv(repo)
	env["CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX"] = prefix
	env["OPTIMIZE_VERSION"] = "3.9.0" // the bulk-created indices have no aliases to read it by
	sc := startSidecar(t, env)
	sc.backupNow("601")
	if got := len(es.snapshots(repo, "camunda_optimize_601_*")[1].Indices); got != 151 {
		t.Errorf("part 2 holds %d indices; want 151", got)
	}
	if status, body := sc.call("POST", "/actuator/backups/601/restore", `{"replaceExisting": true}`); status != 202 {
		t.Fatalf("restore: got %d %s; want 202", status, body)
	}
	job := sc.waitJob("601", "COMPLETED", func(j restoreJob) bool { return j.State == restoreCompleted })
	for _, p := range job.Snapshots {
		if p.State != restoreCompleted || p.ShardsDone != p.ShardsTotal {
			t.Errorf("got progress %+v; want every shard restored", p)
		}
	}
	if got := count(); got != 152 {
		t.Errorf("after the restore: %d documents; want 152", got)
	}
	if settings := es.must("GET", "/many-*/_settings/index.blocks.write", ""); strings.Contains(string(settings), "write") {
		t.Errorf("restored indices keep a write block: %s", settings)
	}
}

// TestIntegrationHostileIDs sends the IDs that once reached Elasticsearch decoded: each names
// exactly its own snapshots, never another backup's, a list or a wildcard.
func TestIntegrationHostileIDs(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("hostile")
	sc := startSidecar(t, es.sidecarEnv(repo))
	sc.backupNow("7")
	if status, body := sc.call("POST", "/actuator/backup", `{"backupId": "acc-p%5fx"}`); status != 200 {
		t.Fatalf("create acc-p%%5fx: got %d %s; want 200", status, body)
	}
	sc.waitState("acc-p%255fx", stateCompleted)
	var names []string
	for _, s := range es.snapshots(repo, "*") {
		names = append(names, s.Name)
	}
	want := []string{"camunda_optimize_7_3.9.0_part_1_of_2", "camunda_optimize_7_3.9.0_part_2_of_2",
		"camunda_optimize_acc-p%5fx_3.9.0_part_1_of_2", "camunda_optimize_acc-p%5fx_3.9.0_part_2_of_2"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("snapshots in the repository (-want +got):\n%s", diff)
	}
	for _, path := range []string{"%252a", "%2a", "%2c7", "7%2c7", "%5fall", "_all", "acc-p_x", "a%25zz"} {
		if status, body := sc.call("GET", "/actuator/backups/"+path, ""); status != 404 && status != 400 {
			t.Errorf("GET /actuator/backups/%s: got %d %s; want 404 or 400, never another backup", path, status, body)
		}
		if status, body := sc.call("DELETE", "/actuator/backups/"+path, ""); status != 404 && status != 400 {
			t.Errorf("DELETE /actuator/backups/%s: got %d %s; want 404 or 400", path, status, body)
		}
	}
	if got := len(es.snapshots(repo, "*")); got != 4 {
		t.Errorf("after the hostile requests: %d snapshots; want all 4", got)
	}
}

// TestIntegrationSecretsStayIn checks that a password in an Elasticsearch URL appears neither
// in an answer to an unauthenticated caller nor in the log, when Elasticsearch is down.
func TestIntegrationSecretsStayIn(t *testing.T) {
	needES(t)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	u := strings.Replace(down.URL, "http://", "http://elastic:hunter2-secret@", 1)
	sc := startSidecar(t, map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": u, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "test-repo"})
	for _, path := range []string{"/actuator/backups/1", "/actuator/backup/1", "/actuator/health", "/actuator/info"} {
		status, body := httpDo(t, "GET", sc.url+path, "", nil)
		if strings.Contains(string(body), "hunter2") {
			t.Errorf("GET %s: got %d %s; want no password", path, status, body)
		}
	}
	if strings.Contains(sc.logs(), "hunter2") {
		t.Errorf("the log holds the password:\n%s", sc.logs())
	}
}

// TestIntegrationSharedRepository runs the sidecars of two installations whose prefixes nest
// (optimize, optimize-east) on one repository: each backs up only its own indices, and neither
// can delete the other's backup.
func TestIntegrationSharedRepository(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("shared")
	optimize := startSidecar(t, es.sidecarEnv(repo))
	envEast := es.sidecarEnv(repo)
	envEast["CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX"] = "optimize-east"
	east := startSidecar(t, envEast)
	optimize.backupNow("801")
	east.backupNow("802")
	for id, prefix := range map[string]string{"801": "optimize-", "802": "optimize-east-"} {
		for _, sn := range es.snapshots(repo, "camunda_optimize_"+id+"_*") {
			for _, ix := range sn.Indices {
				if !strings.HasPrefix(ix, prefix) || prefix == "optimize-" && strings.HasPrefix(ix, "optimize-east-") {
					t.Errorf("backup %s holds %s; want only indices of %s*", id, ix, prefix)
				}
			}
		}
	}
	if status, body := optimize.call("DELETE", "/actuator/backups/802", ""); status != 409 {
		t.Errorf("optimize's sidecar deleting optimize-east's backup: got %d %s; want 409", status, body)
	}
	if status, body := east.call("DELETE", "/actuator/backups/801", ""); status != 409 {
		t.Errorf("optimize-east's sidecar deleting optimize's backup: got %d %s; want 409", status, body)
	}
	if got := len(es.snapshots(repo, "camunda_optimize_*")); got != 4 {
		t.Errorf("after the refused deletes: %d snapshots; want 4", got)
	}
	if status, body := east.call("DELETE", "/actuator/backups/802", ""); status != 204 {
		t.Errorf("optimize-east deleting its own backup: got %d %s; want 204", status, body)
	}

	// Both installations use ID 803 (east's made by its own Optimize 3.10.0, as Optimize makes
	// them: aliases, no metadata, so the names differ by version): a DELETE removes the asking
	// installation's snapshots only.
	optimize.backupNow("803")
	for part, indices := range []string{`["optimize-east-import-index"]`, `["optimize-east-metadata","optimize-east-dashboard"]`} {
		es.must("PUT", fmt.Sprintf("/_snapshot/%s/camunda_optimize_803_3.10.0_part_%d_of_2?wait_for_completion=true", repo, part+1),
			`{"indices":`+indices+`,"include_global_state":false}`)
	}
	if status, body := optimize.call("DELETE", "/actuator/backups/803", ""); status != 204 {
		t.Fatalf("optimize deleting its 803: got %d %s; want 204", status, body)
	}
	var left []string
	for _, sn := range es.snapshots(repo, "camunda_optimize_803_*") {
		left = append(left, sn.Name)
	}
	if diff := cmp.Diff([]string{"camunda_optimize_803_3.10.0_part_1_of_2", "camunda_optimize_803_3.10.0_part_2_of_2"}, left); diff != "" {
		t.Errorf("snapshots of 803 left (-want +got):\n%s", diff)
	}
}

// TestIntegrationBackupVanishesMidRestore deletes the backup straight in Elasticsearch while a
// replace-restore takes its safety backup: the restore must find that out before it deletes
// anything, end FAILED saying so, lift its write block, and leave every index, of this
// installation and of the others, as it was.
func TestIntegrationBackupVanishesMidRestore(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("vanish")
	// Hold the restore in its safety-backup step for a while.
	env, _ := es.proxiedEnv(t, repo, func(method, path string) fault {
		if method == "GET" && strings.Contains(path, "camunda_optimize_safety-") {
			return fault{delay: 1500 * time.Millisecond}
		}
		return fault{}
	})
	sc := startSidecar(t, env)
	before, others := es.installationPrint(), es.othersPrint()
	sc.backupNow("901")
	if status, body := sc.call("POST", "/actuator/backups/901/restore", `{"replaceExisting": true}`); status != 202 {
		t.Fatalf("restore: got %d %s; want 202", status, body)
	}
	sc.waitJob("901", "the safety-backup step", func(j restoreJob) bool { return j.Step == stepSafety })
	es.must("DELETE", "/_snapshot/"+repo+"/camunda_optimize_901_3.9.0_part_1_of_2,camunda_optimize_901_3.9.0_part_2_of_2", "")

	job := sc.waitJob("901", "its end", func(j restoreJob) bool { return !j.active() })
	reason := ""
	if job.FailureReason != nil {
		reason = *job.FailureReason
	}
	if job.State != restoreFailed || !strings.Contains(reason, "nothing was deleted") {
		t.Errorf("restore of a vanished backup: got %s (%s); want FAILED saying nothing was deleted", job.State, reason)
	}
	if diff := cmp.Diff(before, es.installationPrint()); diff != "" {
		t.Errorf("the installation changed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(others, es.othersPrint()); diff != "" { // also: no write block left
		t.Errorf("indices outside the installation changed (-before +after):\n%s", diff)
	}
	if settings := es.must("GET", "/optimize-*/_settings/index.blocks.write", ""); strings.Contains(string(settings), "write") {
		t.Errorf("the installation keeps a write block: %s", settings)
	}
}
