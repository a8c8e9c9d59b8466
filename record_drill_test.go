package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// TestRecordDrills records the answers behind drills and the schedule from the real node (make
// record): the drill document running and passed, and a list page of scheduled backups with
// the two metadata keys retention reads.
func TestRecordDrills(t *testing.T) {
	r := recordingES(t)
	jobs := "/camunda-optimize-backup-jobs"
	r.do("DELETE", jobs, "")
	r.must("PUT", jobs, `{"settings":{"number_of_shards":1,"auto_expand_replicas":"0-1","hidden":true}}`)
	drill := func(state string) string {
		start := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
		d := drillDoc{drillResult: drillResult{BackupID: "12", State: state, Step: "restore-part-2", StartTime: &start, Version: "3.9.0",
			Snapshots: []drillSnapshot{{Snapshot: "camunda_optimize_12_3.9.0_part_1_of_2", UUID: "u1", ShardsTotal: 1, ShardsRestored: 1}, {Snapshot: "camunda_optimize_12_3.9.0_part_2_of_2", UUID: "u2", ShardsTotal: 1}},
			Indices:   []drillIndex{{Snapshot: "camunda_optimize_12_3.9.0_part_1_of_2", Index: "optimize-import-index_v3", TemporaryIndex: "backup-drill-e46f9223-optimize-import-index_v3"}, {Snapshot: "camunda_optimize_12_3.9.0_part_2_of_2", Index: "optimize-metadata_v3", TemporaryIndex: "backup-drill-e46f9223-optimize-metadata_v3"}}},
			Repository: "test-repo", leaseStamp: leaseStamp{Owner: "recorder/1/abcd", docStamp: docStamp{Heartbeat: start.UnixMilli(), Rev: "rec"}}}
		if state == drillPassed {
			end := start.Add(time.Minute)
			docs := int64(100)
			d.Step, d.EndTime, d.SchemaVersion = "done", &end, "3.9.0"
			d.Snapshots[1].ShardsRestored = 1
			d.Indices[0].Documents, d.Indices[1].Documents = &docs, &docs
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	doc := jobs + "/_doc/drill-optimize"
	r.must("PUT", doc, drill(drillRunning))
	r.save("drill-found-running", "the drill of backup 12, restoring part 2", "GET", doc, "")
	r.must("PUT", doc, drill(drillPassed))
	r.save("drill-found-passed", "the drill of backup 12, passed", "GET", doc, "")
	run := scheduleRun{Slot: time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC), BackupID: slotID(time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC), "optimize"),
		Outcome: stateCompleted, Sidecar: "recorder/1/abcd", docStamp: docStamp{Heartbeat: time.Date(2026, 11, 28, 1, 0, 5, 0, time.UTC).UnixMilli(), Rev: "rec"}}
	b, err := json.Marshal(run)
	if err != nil {
		t.Fatal(err)
	}
	r.must("PUT", jobs+"/_doc/schedule-optimize", string(b))
	r.save("schedule-run", "the last scheduled run: the slot of 2026-11-28 01:00 UTC, COMPLETED", "GET", jobs+"/_doc/schedule-optimize", "")
	r.must("DELETE", jobs, "")

	// Two scheduled backups and a manual one, as retention lists them.
	repo := "record-schedule-repo"
	r.newRepo(repo)
	for _, b := range []struct {
		id, kind string
	}{{slotID(time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC), "optimize"), kindScheduled}, {slotID(time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC), "optimize"), kindScheduled}, {"7", ""}} {
		for part, index := range []string{"optimize-import-index_v3", "optimize-metadata_v3"} {
			meta := fmt.Sprintf(`{"version":"3.9.0","partNo":%d,"partCount":2,"createdBy":"optimize-backup","indexPrefix":"optimize","kind":%q}`, part+1, b.kind)
			r.must("PUT", "/_snapshot/"+repo+"/"+snapshotName(b.id, "3.9.0", part+1)+"?wait_for_completion=true",
				fmt.Sprintf(`{"indices":[%q],"include_global_state":false,"metadata":%s}`, index, meta))
		}
	}
	isSlot := func(id string) bool { _, ok := slotOf(id, "optimize"); return ok }
	r.saveList("list-scheduled", "two scheduled backups (slots 2026-11-27 and -28 01:00 UTC) and manual backup 7, as retention reads them: the scheduled ones with kind and indexPrefix", repo, isSlot, scheduledListFields)
}
