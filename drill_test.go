package main

import (
	"testing"
	"time"
)

// TestDrillAndScheduleAPI replays recorded answers through the drill and schedule routes: each
// status code they answer, with nothing changed where they refuse.
func TestDrillAndScheduleAPI(t *testing.T) {
	admin := map[string]string{"Authorization": "Bearer test-admin-token"}
	getDrillResult1 := "GET /camunda-optimize-backup-jobs/_doc/" + (&server{cfg: config{IndexPrefix: "optimize"}}).drillResultDocID("1")
	drillFresh := time.Date(2026, 11, 26, 3, 0, 10, 0, time.UTC) // 10 s after the recorded drill's heartbeat
	scheduled := func(c *config) {
		c.Schedule, _ = parseSchedule("0 1 * * *", "UTC")
		c.RetentionKeep = 1
		c.RetentionMaxAge = 30 * 24 * time.Hour
	}
	cases := []apiCase{
		{name: "verify-no-token", method: "POST", path: "/actuator/backups/1/verify", status: 401},
		{name: "verify-admin-disabled", method: "POST", path: "/actuator/backups/1/verify", header: admin, status: 403,
			cfg: func(c *config) { c.AdminToken = "" }},
		{name: "verify-unknown-backup", method: "POST", path: "/actuator/backups/1/verify", header: admin, status: 404,
			es: map[string]string{getBackup1: "get-unknown"}},
		{name: "verify-in-progress", method: "POST", path: "/actuator/backups/5/verify", header: admin, status: 409,
			es: map[string]string{getBackup("5"): "get-in-progress"}},
		{name: "verify-drill-running", method: "POST", path: "/actuator/backups/1/verify", header: admin, status: 409, now: drillFresh,
			es: map[string]string{getBackup1: "get-completed", getDrill: "drill-found-running"}},
		{name: "verify-restore-running", method: "POST", path: "/actuator/backups/1/verify", header: admin, status: 409, now: drillFresh,
			es: map[string]string{getBackup1: "get-completed", getDrill: "drill-found-passed", getJob: "job-found-running"}},
		{name: "verify-status-running", method: "GET", path: "/actuator/backups/12/verify", status: 200,
			es: map[string]string{getDrill: "drill-found-running"}, wantES: []string{getDrill}},
		{name: "verify-status-none", method: "GET", path: "/actuator/backups/1/verify", status: 404,
			es: map[string]string{getDrill: "drill-found-running", getDrillResult1: "job-none"}, wantES: []string{getDrill, getDrillResult1}},
		{name: "verify-status-bad-id", method: "GET", path: "/actuator/backups/a%00b/verify", status: 400},
		{name: "delete-during-drill", method: "DELETE", path: "/actuator/backups/12", header: admin, status: 409, esRefused: true,
			es: map[string]string{getBackup("12"): "get-completed-12", getMarks: "job-none", createJobs: "jobs-index-created", putMarks: "marks-created",
				getJob: "job-none", getDrill: "drill-found-running"},
			check: deletes("12")},

		{name: "schedule-off", method: "GET", path: "/actuator/schedule", status: 200},
		{name: "schedule", method: "GET", path: "/actuator/schedule", status: 200, cfg: scheduled,
			now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), es: withRoutes(listedRoutes(t, "list-scheduled"), map[string]string{"GET /camunda-optimize-backup-jobs/_doc/schedule-optimize": "schedule-run"})},
	}
	runAPICases(t, cases)
}
