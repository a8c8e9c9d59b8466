package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// record re-records testdata/es from a real Elasticsearch (make record). It is not called
// -update: gotest.tools' golden package owns that flag.
var record = flag.Bool("record", false, "re-record testdata/es from the Elasticsearch at OPTIMIZE_BACKUP_TEST_ES_URL")

// recording is one recorded Elasticsearch answer: the request that produced it, its status and
// its body, replayed by fakeES.
type recording struct {
	Request string          `json:"request"`
	Note    string          `json:"note,omitempty"`
	Status  int             `json:"status"`
	Body    json.RawMessage `json:"body"`
}

// recordingES is the real Elasticsearch that make record runs the recording tests against;
// without -record those tests skip (they rewrite testdata/es).
func recordingES(t *testing.T) realES {
	t.Helper()
	if !*record {
		t.Skip("re-recording only with -record (make record)")
	}
	if testDB() != databaseElasticsearch {
		t.Skip("testdata/es is recorded on Elasticsearch; TestRecordOpenSearch records OpenSearch")
	}
	url, runDir := os.Getenv("OPTIMIZE_BACKUP_TEST_ES_URL"), os.Getenv("OPTIMIZE_BACKUP_TEST_ES_RUN_DIR")
	if url == "" || runDir == "" {
		t.Fatal("set OPTIMIZE_BACKUP_TEST_ES_URL and OPTIMIZE_BACKUP_TEST_ES_RUN_DIR (make record does)")
	}
	return realES{t: t, url: url, runDir: runDir}
}

// save sends one request and writes its answer as testdata/es/name.json (on OpenSearch,
// testdata/opensearch/name.json).
func (r realES) save(name, note, method, path, body string) {
	r.t.Helper()
	status, b := r.do(method, path, body)
	r.write(name, note, method, path, status, b)
}

// write writes an answer already received as testdata/es/name.json.
func (r realES) write(name, note, method, path string, status int, b []byte) {
	r.t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, b, "  ", "  "); err != nil {
		r.t.Fatalf("%s %s answered non-JSON %q", method, path, b)
	}
	out, err := json.MarshalIndent(recording{Request: method + " " + path, Note: note, Status: status, Body: pretty.Bytes()}, "", "  ")
	if err != nil {
		r.t.Fatal(err)
	}
	dir := filepath.Join("testdata", "es")
	if testDB() == databaseOpenSearch {
		dir = filepath.Join("testdata", "opensearch")
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(out, '\n'), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// waitDone waits until no snapshot of the pattern in repo is IN_PROGRESS.
func (r realES) waitDone(repo, pattern string) {
	r.t.Helper()
	for i := 0; i < 300; i++ {
		_, b := r.do("GET", "/_snapshot/"+repo+"/"+pattern, "")
		if !bytes.Contains(b, []byte(`"IN_PROGRESS"`)) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("snapshots %s/%s still IN_PROGRESS after 30 s", repo, pattern)
}

// snapshotQuery is the query the sidecar sends to get snapshots (see getSnapshots).
func snapshotQuery(size int, after string) string {
	fields := snapshotFields
	if size > 0 {
		fields = listFields
	}
	q := url.Values{"sort": {"start_time"}, "order": {"desc"}, "filter_path": {strings.Join(fields, ",")}}
	if size > 0 {
		q.Set("size", fmt.Sprint(size))
	}
	if after != "" {
		q.Set("after", after)
	}
	return "?" + q.Encode()
}

// listQuery is the query of the list of every backup (allBackups): newest first, the list's
// fields, no size or after.
func listQuery() string {
	q := url.Values{"sort": {"start_time"}, "order": {"desc"}, "filter_path": {strings.Join(listFields, ",")}}
	return "?" + q.Encode()
}

// stateQuery is the query a GET of one backup sends (see backupStates): only stateFields.
func stateQuery() string {
	q := url.Values{"sort": {"start_time"}, "order": {"desc"}, "filter_path": {strings.Join(stateFields, ",")}}
	return "?" + q.Encode()
}

const snapshotBody = `{"indices":[%q],"include_global_state":false,"feature_states":["none"],"metadata":{"backupId":%q,"version":"3.9.0","partNo":%d,"partCount":2,"createdBy":"optimize-backup"}}`

// TestRecord re-records every Elasticsearch answer the golden tests replay, from the real
// node that testenv/es-start.sh runs, loaded by testenv/load-data.sh. Run it with make record.
func TestRecord(t *testing.T) {
	r := recordingES(t)
	repo := "record-repo"
	r.newRepo(repo)
	snap := func(repoName, name, index, id string, part int) {
		r.must("PUT", "/_snapshot/"+repoName+"/"+name+"?wait_for_completion=true", fmt.Sprintf(snapshotBody, index, id, part))
	}

	// A completed backup 1 (and 12, whose ID starts like 1's).
	for _, id := range []string{"1", "12"} {
		snap(repo, "camunda_optimize_"+id+"_3.9.0_part_1_of_2", "optimize-import-index_v3", id, 1)
		snap(repo, "camunda_optimize_"+id+"_3.9.0_part_2_of_2", "optimize-metadata_v3", id, 2)
	}
	r.save("get-completed", "backup 1: both parts SUCCESS", "GET", "/_snapshot/"+repo+"/camunda_optimize_1_*"+snapshotQuery(0, ""), "")
	r.save("get-unknown", "no snapshot matches", "GET", "/_snapshot/"+repo+"/camunda_optimize_404_*"+snapshotQuery(0, ""), "")
	r.save("get-missing-repo", "the repository is not registered: a 200 with failures", "GET", "/_snapshot/no-such-repo/camunda_optimize_1_*"+snapshotQuery(0, ""), "")
	// The same as a GET of the backup reads them (state-*: only stateFields).
	r.save("state-completed", "backup 1: both parts SUCCESS, as GET reads it", "GET", "/_snapshot/"+repo+"/camunda_optimize_1_*"+stateQuery(), "")
	r.save("state-unknown", "no snapshot matches, as GET reads it", "GET", "/_snapshot/"+repo+"/camunda_optimize_404_*"+stateQuery(), "")
	r.save("state-missing-repo", "the repository is not registered, as GET reads it: a 200 with failures", "GET", "/_snapshot/no-such-repo/camunda_optimize_1_*"+stateQuery(), "")

	// Backup 2: part 1 only (part 2 not started yet, or lost).
	snap(repo, "camunda_optimize_2_3.9.0_part_1_of_2", "optimize-import-index_v3", "2", 1)
	r.save("get-part1-only", "backup 2: part 1 SUCCESS, no part 2", "GET", "/_snapshot/"+repo+"/camunda_optimize_2_*"+snapshotQuery(0, ""), "")
	r.save("state-part1-only", "backup 2: part 1 SUCCESS, no part 2, as GET reads it", "GET", "/_snapshot/"+repo+"/camunda_optimize_2_*"+stateQuery(), "")

	// Backup 3: three snapshots matching the scheme (a part 1 of another version too).
	snap(repo, "camunda_optimize_3_3.8.0_part_1_of_2", "optimize-import-index_v3", "3", 1)
	snap(repo, "camunda_optimize_3_3.9.0_part_1_of_2", "optimize-import-index_v3", "3", 1)
	snap(repo, "camunda_optimize_3_3.9.0_part_2_of_2", "optimize-metadata_v3", "3", 2)
	r.save("state-extra", "backup 3: three snapshots, as GET reads it", "GET", "/_snapshot/"+repo+"/camunda_optimize_3_*"+stateQuery(), "")

	// Backup 4: part 1 PARTIAL, because a shard's files were unreadable to Elasticsearch.
	shardDir := r.shardDir("optimize-dashboard_v8")
	files, _ := filepath.Glob(filepath.Join(shardDir, "_*"))
	for _, f := range files {
		os.Chmod(f, 0)
	}
	snap(repo, "camunda_optimize_4_3.9.0_part_1_of_2", "optimize-dashboard_v8", "4", 1)
	for _, f := range files {
		os.Chmod(f, 0o644)
	}
	r.save("get-partial", "backup 4: part 1 PARTIAL (shard files unreadable)", "GET", "/_snapshot/"+repo+"/camunda_optimize_4_*"+snapshotQuery(0, ""), "")
	r.save("state-partial", "backup 4: part 1 PARTIAL (shard files unreadable), as GET reads it", "GET", "/_snapshot/"+repo+"/camunda_optimize_4_*"+stateQuery(), "")

	// Backup 5: part 1 IN_PROGRESS, in a repository throttled to 1 KB/s.
	slow := "record-slow-repo"
	r.must("PUT", "/_snapshot/"+slow, fmt.Sprintf(`{"type":"fs","settings":{"location":%q,"max_snapshot_bytes_per_sec":"1kb"}}`, filepath.Join(r.runDir, "repo", "slow-"+fmt.Sprint(time.Now().UnixNano()))))
	r.must("PUT", "/_snapshot/"+slow+"/camunda_optimize_5_3.9.0_part_1_of_2", fmt.Sprintf(snapshotBody, "optimize-process-instance-invoice_v8", "5", 1))
	r.save("get-in-progress", "backup 5: part 1 IN_PROGRESS (repository throttled)", "GET", "/_snapshot/"+slow+"/camunda_optimize_5_*"+snapshotQuery(0, ""), "")
	r.save("state-in-progress", "backup 5: part 1 IN_PROGRESS (repository throttled), as GET reads it", "GET", "/_snapshot/"+slow+"/camunda_optimize_5_*"+stateQuery(), "")
	r.save("current-running", "a snapshot is running", "GET", "/_snapshot/"+slow+"/_current?filter_path=snapshots.snapshot", "")
	r.save("create-in-use-running", "a second create of a running snapshot's name", "PUT", "/_snapshot/"+slow+"/camunda_optimize_5_3.9.0_part_1_of_2?master_timeout=30s&wait_for_completion=false", fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "5", 1))
	r.must("DELETE", "/_snapshot/"+slow+"/camunda_optimize_5_3.9.0_part_1_of_2", "")
	r.must("DELETE", "/_snapshot/"+slow, "")

	// Creating and deleting.
	r.save("create-accepted", "start part 1 of backup 6", "PUT", "/_snapshot/"+repo+"/camunda_optimize_6_3.9.0_part_1_of_2?master_timeout=30s&wait_for_completion=false", fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "6", 1))
	r.waitDone(repo, "camunda_optimize_6_*")
	r.save("create-in-use-exists", "a second create of an existing snapshot's name", "PUT", "/_snapshot/"+repo+"/camunda_optimize_6_3.9.0_part_1_of_2?master_timeout=30s&wait_for_completion=false", fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "6", 1))
	r.save("create-missing-repo", "the repository is not registered", "PUT", "/_snapshot/no-such-repo/camunda_optimize_6_3.9.0_part_1_of_2?master_timeout=30s&wait_for_completion=false", fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "6", 1))
	r.save("delete-ack", "delete both snapshots of backup 1", "DELETE", "/_snapshot/"+repo+"/camunda_optimize_1_3.9.0_part_1_of_2,camunda_optimize_1_3.9.0_part_2_of_2?master_timeout=30s", "")
	r.save("delete-missing", "delete a snapshot that is gone", "DELETE", "/_snapshot/"+repo+"/camunda_optimize_1_3.9.0_part_1_of_2?master_timeout=30s", "")

	// What a backup reads before it starts.
	r.save("resolve", "the indices of prefix optimize (load-data.sh)", "GET", "/_resolve/index/optimize-*?expand_wildcards=all&filter_path=indices.name,aliases.name", "")
	r.save("resolve-empty", "a prefix without indices", "GET", "/_resolve/index/nothing-*?expand_wildcards=all&filter_path=indices.name,aliases.name", "")
	r.save("metadata", "Optimize's metadata document", "GET", "/optimize-metadata/_doc/1", "")
	r.save("metadata-missing", "a prefix without metadata index", "GET", "/nothing-metadata/_doc/1", "")

	// Listing: a repository with backups 12, 2 and 3 (1 was deleted above), 6, a snapshot
	// named as Optimize 3.9 names them (no metadata) and a foreign one.
	r.must("PUT", "/_snapshot/"+repo+"/camunda_optimize_legacy_3.9.0_part_1_of_2?wait_for_completion=true", `{"indices":"optimize-import-index_v3","include_global_state":false}`)
	r.must("PUT", "/_snapshot/"+repo+"/nightly-cluster-snapshot?wait_for_completion=true", `{"indices":"unrelated-logs","include_global_state":false}`)
	r.save("list", "backups 12, 2, 3, 6, legacy (as Optimize 3.9 names them) and a foreign snapshot: every camunda_optimize_* snapshot in one answer", "GET", "/_snapshot/"+repo+"/camunda_optimize_*"+listQuery(), "")
	r.save("list-empty", "no snapshot in the repository matches", "GET", "/_snapshot/"+repo+"/nothing_*"+listQuery(), "")
	r.save("list-missing-repo", "listing a repository that is not registered: a 200 with failures", "GET", "/_snapshot/no-such-repo/camunda_optimize_*"+listQuery(), "")

	// Restore: what the preconditions read, and a real restore of backup 12 (its indices
	// deleted first; make record runs on a node of its own).
	r.save("get-completed-12", "backup 12: both parts SUCCESS", "GET", "/_snapshot/"+repo+"/camunda_optimize_12_*"+snapshotQuery(0, ""), "")
	r.save("current-none", "no snapshot running", "GET", "/_snapshot/"+repo+"/_current?filter_path=snapshots.snapshot", "")
	r.must("DELETE", "/optimize-import-index_v3,optimize-metadata_v3", "")
	for part, index := range map[string]string{"1": "optimize-import-index_v3", "2": "optimize-metadata_v3"} {
		r.save("restore-accepted-"+part, "restore part "+part+" of backup 12", "POST", "/_snapshot/"+repo+"/camunda_optimize_12_3.9.0_part_"+part+"_of_2/_restore?master_timeout=30s&wait_for_completion=false",
			fmt.Sprintf(`{"include_aliases":true,"include_global_state":false,"indices":%q}`, index))
		r.must("GET", "/_cluster/health/"+index+"?wait_for_status=green&timeout=30s", "")
		r.save("recovery-done-"+part, "restore of part "+part+" of backup 12 done", "GET", "/"+index+"/_recovery?filter_path=*.shards.id,*.shards.type,*.shards.stage,*.shards.primary,*.shards.source.snapshot,*.shards.index.size&ignore_unavailable=true", "")
	}
	r.save("recovery-none", "indices that do not exist (yet)", "GET", "/nothing-1,nothing-2/_recovery?filter_path=*.shards.id,*.shards.type,*.shards.stage,*.shards.primary,*.shards.source.snapshot,*.shards.index.size&ignore_unavailable=true", "")

	// Health and info.
	r.save("cluster-health", "", "GET", "/_cluster/health?filter_path=status", "")
	r.save("get-repository", "", "GET", "/_snapshot/"+repo, "")
	r.save("get-repository-missing", "", "GET", "/_snapshot/no-such-repo", "")
	r.save("nodes-info", "", "GET", "/_nodes/_local?filter_path=nodes.*.version", "")

	// Two states a single node cannot produce on demand, edited from real recordings.
	edit(t, "state-completed", "state-incompatible", "EDITED from state-completed: part 2 set to INCOMPATIBLE (a node reports that only for a snapshot of a newer version)",
		func(body map[string]any) {
			for _, s := range body["snapshots"].([]any) {
				if snap := s.(map[string]any); strings.Contains(snap["snapshot"].(string), "part_2") {
					snap["state"] = "INCOMPATIBLE"
				}
			}
		})
	edit(t, "recovery-done-1", "recovery-running", "EDITED from recovery-done-1: stage INDEX, half the bytes recovered (a tiny index restores before it can be recorded running)",
		func(body map[string]any) {
			for _, ix := range body {
				for _, sh := range ix.(map[string]any)["shards"].([]any) {
					shard := sh.(map[string]any)
					shard["stage"] = "INDEX"
					size := shard["index"].(map[string]any)["size"].(map[string]any)
					size["recovered_in_bytes"] = float64(int64(size["total_in_bytes"].(float64)) / 2)
				}
			}
		})
}

// edit writes recording to as from, changed by change, with the note set.
func edit(t *testing.T, from, to, note string, change func(body map[string]any)) {
	t.Helper()
	rec := loadRecording(t, from)
	var body map[string]any
	if err := json.Unmarshal(rec.Body, &body); err != nil {
		t.Fatal(err)
	}
	change(body)
	b, err := json.MarshalIndent(body, "  ", "  ")
	if err != nil {
		t.Fatal(err)
	}
	rec.Note, rec.Body = note, b
	out, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "es", to+".json"), append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// editSafetyParts writes safety-part-1-done and safety-part-2-done: the two parts of the safety
// backup that a replace-restore of backup 12 takes at testNow, SUCCESS, as the job reads each
// by its exact name. A node takes such a snapshot only inside a restore job, so they are edited
// from get-part1-done-1 (a part read by its exact name): the name, the indices (the
// installation's import indices in part 1, the others in part 2) and the metadata.
func editSafetyParts(t *testing.T) {
	for part, indices := range [][]string{optimizeIndices[:3], optimizeIndices[3:]} {
		name := snapshotName(safetyID, "3.9.0", part+1)
		note := fmt.Sprintf("EDITED from get-part1-done-1: part %d of the safety backup %s, SUCCESS, read by its exact name (a node takes it only inside a restore job)", part+1, safetyID)
		edit(t, "get-part1-done-1", fmt.Sprintf("safety-part-%d-done", part+1), note, func(body map[string]any) {
			snap := body["snapshots"].([]any)[0].(map[string]any)
			snap["snapshot"], snap["indices"] = name, indices
			meta := snap["metadata"].(map[string]any)
			meta["backupId"], meta["partNo"], meta["kind"], meta["indexPrefix"] = safetyID, part+1, "safety", "optimize"
			snap["shards"] = map[string]any{"total": len(indices), "failed": 0, "successful": len(indices)}
		})
	}
}

// shardDir is the directory of shard 0 of an index on node 1.
func (r realES) shardDir(index string) string {
	r.t.Helper()
	_, b := r.do("GET", "/"+index+"/_settings?filter_path=*.settings.index.uuid", "")
	var settings map[string]struct {
		Settings struct {
			Index struct {
				UUID string `json:"uuid"`
			} `json:"index"`
		} `json:"settings"`
	}
	if err := json.Unmarshal(b, &settings); err != nil {
		r.t.Fatal(err)
	}
	data := filepath.Join(r.runDir, "node-1", "data")
	if testDB() == databaseOpenSearch {
		data = filepath.Join(data, "nodes", "0") // OpenSearch keeps Elasticsearch 7's layout
	}
	return filepath.Join(data, "indices", settings[index].Settings.Index.UUID, "0", "index")
}

// TestRecordRestoreJobs records the answers behind the restore job stored in Elasticsearch,
// the index rule (two installations whose prefixes nest) and the restore's batched index
// requests, from the real node (make record). It also proves on the node that a restore with
// ignore_index_settings drops a write block the snapshot was taken with.
func TestRecordRestoreJobs(t *testing.T) {
	r := recordingES(t)
	jobs := "/camunda-optimize-backup-jobs"
	doc := jobs + "/_doc/restore-optimize"
	r.do("DELETE", jobs, "")
	jobBody := func(state, step string) string {
		d := jobDoc{
			restoreJob: restoreJob{BackupID: "12", State: state, Step: step, SafetyBackupID: ptr("safety-20270101t000000000z"),
				Snapshots: []restoreProgress{
					{SnapshotName: "camunda_optimize_12_3.9.0_part_1_of_2", State: restoreCompleted, ShardsDone: 1, ShardsTotal: 1, BytesRecovered: 5000, BytesTotal: 5000},
					{SnapshotName: "camunda_optimize_12_3.9.0_part_2_of_2", State: restoreRunning, ShardsTotal: 1, BytesTotal: 7000, BytesRecovered: 3500}},
				StartTime: ptr(time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC))},
			Repository: "test-repo",
			Plan: restorePlan{Version: "3.9.0", Replace: []string{"optimize-import-index_v3", "optimize-metadata_v3"}, Parts: []planPart{
				{Snapshot: "camunda_optimize_12_3.9.0_part_1_of_2", Indices: []string{"optimize-import-index_v3"}, Shards: 1},
				{Snapshot: "camunda_optimize_12_3.9.0_part_2_of_2", Indices: []string{"optimize-metadata_v3"}, Shards: 1}}},
			leaseStamp: leaseStamp{Owner: "recorder/1/abcd", docStamp: docStamp{Heartbeat: time.Date(2026, 11, 26, 1, 0, 5, 0, time.UTC).UnixMilli(), Rev: "rec"}},
		}
		if state == restoreCompleted {
			d.EndTime = ptr(time.Date(2026, 11, 26, 1, 2, 0, 0, time.UTC))
			d.Snapshots[1] = restoreProgress{SnapshotName: d.Snapshots[1].SnapshotName, State: restoreCompleted, ShardsDone: 1, ShardsTotal: 1, BytesRecovered: 7000, BytesTotal: 7000}
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	r.save("job-none", "no restore job: the jobs index does not exist yet", "GET", doc, "")
	r.save("jobs-index-created", "create the jobs index", "PUT", jobs, `{"settings":{"number_of_shards":1,"auto_expand_replicas":"0-1","hidden":true}}`)
	r.save("jobs-index-exists", "create the jobs index again", "PUT", jobs, `{"settings":{"number_of_shards":1,"auto_expand_replicas":"0-1","hidden":true}}`)
	r.save("job-created", "take the restore lock: create the job document", "PUT", doc+"?op_type=create&refresh=false", jobBody(restoreRunning, "restore-part-2"))
	r.save("job-create-conflict", "a second create of the job document", "PUT", doc+"?op_type=create&refresh=false", jobBody(restoreRunning, "restore-part-2"))
	r.save("job-found-running", "the stored job of backup 12, restoring part 2", "GET", doc, "")
	r.save("job-updated", "compare-and-set at the current version", "PUT", doc+"?if_primary_term=1&if_seq_no=0&refresh=false", jobBody(restoreCompleted, stepDone))
	r.save("job-update-conflict", "compare-and-set at a stale version", "PUT", doc+"?if_primary_term=1&if_seq_no=0&refresh=false", jobBody(restoreCompleted, stepDone))
	r.save("job-found-completed", "the stored job of backup 12, completed", "GET", doc, "")
	marks := jobs + "/_doc/deleting-optimize"
	r.save("marks-created", "a DELETE marks backup 12 as being deleted", "PUT", marks+"?op_type=create&refresh=false", `{"backups":{"12":1798761600000},"heartbeatMillis":1798761600000,"rev":"rec"}`)
	r.save("marks-backup-12", "backup 12 marked as being deleted", "GET", marks, "")
	r.must("DELETE", jobs, "")

	// Two installations whose prefixes nest, and a foreign index starting with the prefix.
	r.save("resolve-installations", "indices of optimize-* with optimize-east and optimize-logs-2026.11 (load-data.sh)", "GET", "/_resolve/index/optimize-*?expand_wildcards=all&filter_path=indices.name,aliases.name", "")
	r.save("indices-exist", "which of two names exist", "GET", "/_resolve/index/optimize-import-index_v3,optimize-nothing_v1?expand_wildcards=all&filter_path=indices.name&ignore_unavailable=true", "")

	r.save("indices-exist-none", "which of two names exist: none", "GET", "/_resolve/index/optimize-nothing_v1,optimize-nothing_v2?expand_wildcards=all&filter_path=indices.name&ignore_unavailable=true", "")

	// Part 1 of backups 1 and nightly just done, as the part-2 starter reads it before and
	// after it starts part 2.
	doneRepo := "record-done-repo"
	r.newRepo(doneRepo)
	for _, id := range []string{"1", "nightly"} {
		name := "camunda_optimize_" + id + "_3.9.0_part_1_of_2"
		r.must("PUT", "/_snapshot/"+doneRepo+"/"+name+"?wait_for_completion=true", fmt.Sprintf(snapshotBody, "optimize-import-index_v3", id, 1))
		r.save("get-part1-done-"+id, "backup "+id+": part 1 SUCCESS, read by its exact name", "GET", "/_snapshot/"+doneRepo+"/"+name+snapshotQuery(0, ""), "")
		r.must("DELETE", "/_snapshot/"+doneRepo+"/"+name, "")
	}
	r.must("DELETE", "/_snapshot/"+doneRepo, "")
	editSafetyParts(t)

	// Backup 13 as a sidecar that did not tell installations apart took it: part 2 holds
	// optimize-east's indices too.
	twoRepo := "record-two-repo"
	r.newRepo(twoRepo)
	r.must("PUT", "/_snapshot/"+twoRepo+"/camunda_optimize_13_3.9.0_part_1_of_2?wait_for_completion=true", fmt.Sprintf(snapshotBody, "optimize-import-index_v3", "13", 1))
	r.must("PUT", "/_snapshot/"+twoRepo+"/camunda_optimize_13_3.9.0_part_2_of_2?wait_for_completion=true",
		`{"indices":["optimize-metadata_v3","optimize-east-metadata_v3","optimize-east-dashboard_v8"],"include_global_state":false,"metadata":{"backupId":"13","version":"3.9.0","partNo":2,"partCount":2,"createdBy":"optimize-backup"}}`)
	r.save("get-two-installations-13", "backup 13: part 2 holds optimize-east's indices too", "GET", "/_snapshot/"+twoRepo+"/camunda_optimize_13_*"+snapshotQuery(0, ""), "")
	r.must("DELETE", "/_snapshot/"+twoRepo+"/camunda_optimize_13_3.9.0_part_1_of_2,camunda_optimize_13_3.9.0_part_2_of_2", "")
	r.must("DELETE", "/_snapshot/"+twoRepo, "")

	// Write block, snapshot with it, restore without it.
	r.do("DELETE", "/rec-blocked_v1", "")
	r.must("PUT", "/rec-blocked_v1", `{"settings":{"number_of_shards":1,"number_of_replicas":0}}`)
	r.must("POST", "/rec-blocked_v1/_doc?refresh=true", `{"a":1}`)
	r.save("write-block-set", "write block on an index", "PUT", "/rec-blocked_v1/_settings?ignore_unavailable=true&master_timeout=30s", `{"index.blocks.write":true}`)
	repo := "record-block-repo"
	r.newRepo(repo)
	r.must("PUT", "/_snapshot/"+repo+"/blocked?wait_for_completion=true", `{"indices":["rec-blocked_v1"],"include_global_state":false}`)
	r.save("write-block-lifted", "lift the write block", "PUT", "/rec-blocked_v1/_settings?ignore_unavailable=true&master_timeout=30s", `{"index.blocks.write":null}`)
	r.save("delete-indices-batch", "delete one batch of indices", "DELETE", "/rec-blocked_v1?expand_wildcards=none&ignore_unavailable=true&master_timeout=30s", "")
	r.save("restore-accepted-unblocked", "restore an index snapshotted with a write block, dropping the block", "POST", "/_snapshot/"+repo+"/blocked/_restore?master_timeout=30s&wait_for_completion=false",
		`{"indices":["rec-blocked_v1"],"include_global_state":false,"include_aliases":true,"ignore_index_settings":["index.blocks.write"]}`)
	r.must("GET", "/_cluster/health/rec-blocked_v1?wait_for_status=green&timeout=30s", "")
	r.save("restore-index-exists", "restore an index that exists (a restore request applied late, after a restart)", "POST", "/_snapshot/"+repo+"/blocked/_restore?master_timeout=30s&wait_for_completion=false",
		`{"indices":["rec-blocked_v1"],"include_global_state":false,"include_aliases":true,"ignore_index_settings":["index.blocks.write"]}`)
	_, settings := r.do("GET", "/rec-blocked_v1/_settings?flat_settings=true", "")
	if bytes.Contains(settings, []byte("blocks.write")) {
		t.Errorf("restored index settings %s; want no write block", settings)
	}
	r.must("DELETE", "/rec-blocked_v1", "")
	r.must("DELETE", "/_snapshot/"+repo+"/blocked", "")
	r.must("DELETE", "/_snapshot/"+repo, "")
}
