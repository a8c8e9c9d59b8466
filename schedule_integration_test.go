package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// logLines returns the JSON log lines of a sidecar with this message.
func (s sidecar) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.logs(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// scheduledIDs returns the IDs of the optimize installation's backups in the repository whose
// snapshots say they are scheduled, and how many snapshots each has.
func (es realES) scheduledIDs(repo string) map[string]int {
	out := map[string]int{}
	for _, sn := range es.snapshots(repo, "camunda_optimize_*") {
		id, _, _, _, _ := parseSnapshotName(sn.Name)
		if sn.Metadata["kind"] == kindScheduled && sn.Metadata["indexPrefix"] == "optimize" {
			out[id]++
		}
	}
	return out
}

// metricValue returns the value of one metric line (name with labels) of /actuator/prometheus.
func (s sidecar) metricValue(line string) string {
	s.t.Helper()
	_, body := s.call("GET", "/actuator/prometheus", "")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + ` (\S+)$`).FindStringSubmatch(string(body))
	if m == nil {
		s.t.Fatalf("metric %s missing from:\n%s", line, body)
	}
	return m[1]
}

// TestIntegrationScheduleTwoReplicas runs two sidecars with a schedule of every 4 seconds on
// one repository: every slot gets exactly one backup (one replica takes it, the other finds it
// taken), IDs are the slots' Unix seconds, retention keeps exactly the newest 2 COMPLETED
// scheduled backups and never the manual one nor optimize-east's, both replicas report the same repository
// metrics, and GET /actuator/schedule shows the last run.
func TestIntegrationScheduleTwoReplicas(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("it-schedule")
	env := es.sidecarEnv(repo)
	manual := startSidecar(t, env)
	manual.backupNow("7")
	manual.stop()
	// optimize-east's scheduled backup of an old slot in the same repository: retention of
	// optimize must leave it alone, however old.
	eastID := slotID(time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC), "optimize-east")
	for part := 1; part <= 2; part++ {
		es.must("PUT", "/_snapshot/"+repo+"/"+snapshotName(eastID, "3.9.0", part)+"?wait_for_completion=true",
			fmt.Sprintf(`{"indices":["optimize-east-metadata_v3"],"include_global_state":false,"metadata":{"version":"3.9.0","partNo":%d,"partCount":2,"createdBy":"optimize-backup","indexPrefix":"optimize-east","kind":"scheduled"}}`, part))
	}

	env["OPTIMIZE_BACKUP_SCHEDULE"] = "*/4 * * * * *"
	env["OPTIMIZE_BACKUP_RETENTION_KEEP"] = "2"
	a, b := startSidecar(t, env), startSidecar(t, env)
	// Wait for 4 slots to have ended, by either replica.
	deadline := time.Now().Add(60 * time.Second)
	for len(a.logLines("scheduled backup ended"))+len(b.logLines("scheduled backup ended")) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 4 scheduled backups ended within 60 s; logs:\n%s\n%s", a.logs(), b.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // the last slot's retention
	if av, bv := a.metricValue("optimize_backup_last_success_timestamp_seconds"), b.metricValue("optimize_backup_last_success_timestamp_seconds"); av != bv {
		t.Errorf("got last success %s on one replica and %s on the other; want the same", av, bv)
	}
	status, body := a.call("GET", "/actuator/schedule", "")
	var view scheduleView
	if err := json.Unmarshal(body, &view); status != 200 || err != nil || view.LastRun == nil || view.LastRun.Outcome == "" || len(view.NextSlots) != 3 || view.Schedule != "*/4 * * * * *" {
		t.Errorf("GET /actuator/schedule: got %d %s; want the schedule, 3 next slots and the last run", status, body)
	}
	a.stop()
	b.stop()

	// Every slot was started exactly once, by one replica; the other found it taken (or was
	// still busy with the slot before, and skipped it).
	for _, s := range []sidecar{a, b} {
		if failed := s.logLines("scheduled backup could not start"); len(failed) > 0 {
			t.Errorf("got failed slot starts %v; want each slot started or found taken", failed)
		}
	}
	started := map[string]int{}
	for _, s := range []sidecar{a, b} {
		for _, l := range s.logLines("scheduled backup started") {
			started[l["backup_id"].(string)]++
		}
	}
	for id, n := range started {
		slot, ok := slotOf(id, "optimize")
		if n != 1 || !ok || slot.Unix()%4 != 0 {
			t.Errorf("backup %s: started %d times; want once, with the slot ID of a slot (a multiple of 4 s)", id, n)
		}
	}
	if taken := len(a.logLines("scheduled backup: the slot's backup exists already (another replica took it, or this one before a restart)")) + len(b.logLines("scheduled backup: the slot's backup exists already (another replica took it, or this one before a restart)")); taken < 1 {
		t.Errorf("got %d slots found taken for %d started; want the other replica to have raced for at least one slot and found it taken", taken, len(started))
	}

	// A last retention pass, as the sidecar runs it after a slot: nothing may be in flight.
	srv := envServer(t, forTestDB(env))
	srv.now = time.Now
	var err error
	var scheduled []scheduledBackup
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if scheduled, err = srv.scheduledBackups(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(scheduled, func(sb scheduledBackup) bool { return sb.State == stateInProgress }) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("a scheduled backup is still IN_PROGRESS 30 s after the sidecars stopped: %+v", scheduled)
		}
	}
	srv.applyRetention(context.Background())
	if scheduled, err = srv.scheduledBackups(context.Background()); err != nil {
		t.Fatal(err)
	}
	var completed []string
	for _, sb := range scheduled {
		if sb.State == stateCompleted {
			completed = append(completed, sb.BackupID)
		}
	}
	var allStarted []string
	for id := range started {
		allStarted = append(allStarted, id)
	}
	slices.Sort(allStarted)
	if len(completed) != 2 || !slices.Contains(allStarted, completed[0]) || completed[0] != allStarted[len(allStarted)-1] {
		t.Errorf("got COMPLETED scheduled backups %v of started %v; want exactly the newest 2", completed, allStarted)
	}
	if got := es.scheduledIDs(repo); len(got) != len(scheduled) {
		t.Errorf("got scheduled snapshots %v; want 2 per remaining backup", got)
	} else {
		for id, n := range got {
			if n != 2 {
				t.Errorf("backup %s has %d snapshots; want exactly 2 (one backup per slot)", id, n)
			}
		}
	}
	if snaps := es.snapshots(repo, "camunda_optimize_7_*"); len(snaps) != 2 {
		t.Errorf("got %d snapshots of the manual backup 7; want both kept", len(snaps))
	}
	if snaps := es.snapshots(repo, "camunda_optimize_"+eastID+"_*"); len(snaps) != 2 {
		t.Errorf("got %d snapshots of optimize-east's scheduled backup %s; want both kept", len(snaps), eastID)
	}
}

// TestIntegrationScheduleVerifies runs a schedule with OPTIMIZE_BACKUP_VERIFY_SCHEDULED: the
// scheduled backup is drilled once it completed, the drill passes, its temporary indices are
// gone, and retention ran after it.
func TestIntegrationScheduleVerifies(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("it-schedule-verify")
	before := es.installationPrint()
	env := es.sidecarEnv(repo)
	env["OPTIMIZE_BACKUP_SCHEDULE"] = "*/5 * * * * *"
	env["OPTIMIZE_BACKUP_VERIFY_SCHEDULED"] = "true"
	env["OPTIMIZE_BACKUP_RETENTION_KEEP"] = "1"
	sc := startSidecar(t, env)
	deadline := time.Now().Add(60 * time.Second)
	for len(sc.logLines("scheduled drill ended")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled drill ended within 60 s; logs:\n%s", sc.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	ended := sc.logLines("scheduled drill ended")[0]
	t.Logf("scheduled drill: %v", ended)
	id, _ := ended["backup_id"].(string)
	if _, ok := slotOf(id, "optimize"); !ok || ended["outcome"] != drillPassed {
		t.Errorf("got scheduled drill %v; want outcome PASSED of a slot's backup", ended)
	}
	_, body := sc.call("GET", "/actuator/backups/"+id, "")
	var info struct{ LastVerification *drillResult }
	if json.Unmarshal(body, &info); info.LastVerification == nil || info.LastVerification.State != drillPassed {
		t.Errorf("GET backup %s: got %s; want lastVerification PASSED", id, body)
	}
	sc.stop()
	es.assertDrillLeftNothing(t, before)
}
