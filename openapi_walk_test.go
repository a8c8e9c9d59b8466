package main

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// walkOp is one operation of openapi.json: a method on a path template.
type walkOp struct {
	method, path string
	// hasBody tells whether the operation documents a request body.
	hasBody bool
	// statuses are the statuses the operation documents.
	statuses []int
}

// documentedOps are the operations of openapi.json, sorted by path and method.
func documentedOps(t *testing.T) []walkOp {
	t.Helper()
	var ops []walkOp
	for path, item := range loadOpenAPI(t).Paths {
		for _, m := range openAPIMethods {
			raw, ok := item[m]
			if !ok {
				continue
			}
			var op struct {
				RequestBody json.RawMessage            `json:"requestBody"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("openapi.json: %s %s: %v", m, path, err)
			}
			w := walkOp{method: strings.ToUpper(m), path: path, hasBody: op.RequestBody != nil}
			for code := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Fatalf("openapi.json: %s %s documents the status %q; want a number", m, path, code)
				}
				w.statuses = append(w.statuses, n)
			}
			slices.Sort(w.statuses)
			ops = append(ops, w)
		}
	}
	slices.SortFunc(ops, func(a, b walkOp) int { return strings.Compare(a.path+" "+a.method, b.path+" "+b.method) })
	return ops
}

// walkSituation is a state of Elasticsearch and the sidecar, and what a caller sends in it:
// the walk sends every documented operation in it.
type walkSituation struct {
	name string
	// id fills {id} in the path, and is the backupId of a create.
	id string
	// snapshots and states are Elasticsearch's answers for the snapshots of the backup id: with
	// every field (what create, DELETE, restore and verify read), and with only the state
	// fields (what a GET of the backup reads). Empty: the backup does not exist.
	snapshots, states string
	// es are the other answers of the fake Elasticsearch (added to walkAnswers); unreachable:
	// nothing listens at Elasticsearch's address.
	es          map[string]string
	unreachable bool
	cfg         func(*config)
	// header replaces the admin token the walk sends by default (empty: no header at all).
	header map[string]string
	// createBody and restoreBody replace the bodies the walk sends by default.
	createBody, restoreBody *string
	// query is added to every path.
	query string
}

// getDrillResult is the request that reads the last drill result of backup id.
func getDrillResult(id string) string {
	return "GET /camunda-optimize-backup-jobs/_doc/" + (&server{cfg: config{IndexPrefix: "optimize"}}).drillResultDocID(id)
}

// walkAnswers are the answers of the fake Elasticsearch that every situation starts from:
// what a create of backup 1 asks, nothing stored in the jobs index, an empty repository, and
// what the operations routes read.
func walkAnswers(id string) map[string]string {
	es := createRoutes()
	for k, v := range map[string]string{
		getJob: "job-none", getMarks: "job-none", getDrill: "job-none",
		getDrillResult(id): "job-none", listAll: "list-empty", getCurrent: "current-none",
		"GET /_cluster/health": "cluster-health", "GET /_snapshot/test-repo": "get-repository", "GET /_nodes/_local": "nodes-info",
	} {
		es[k] = v
	}
	return es
}

// walkSituations are the situations the walk sends every operation in: together they cause
// each status the routes answer that a replayed recording can cause cheaply. Left out are the
// 202s of a restore and a drill that start (long background work, with golden tests of their
// own) and the schedule's 500 (the fake answers by path, and the schedule reads the list
// routes' path with other fields, so the two need one answer the recordings do not have).
func walkSituations() []walkSituation {
	scheduled := func(c *config) { c.Schedule, _ = parseSchedule("0 1 * * *", "UTC") }
	return []walkSituation{
		{name: "backup-completed", id: "1", snapshots: "get-completed", states: "state-completed",
			// A drill of backup 12 runs: a verify is refused (409) before it would start one.
			es: map[string]string{getDrill: "drill-found-running", createJobs: "jobs-index-created", putMarks: "marks-created", deleteBoth1: "delete-ack"}},
		{name: "backup-unknown", id: "1"},
		{name: "no-token", id: "1", header: map[string]string{}},
		{name: "wrong-token", id: "1", header: map[string]string{"Authorization": "Bearer nope"}},
		{name: "admin-disabled", id: "1", cfg: func(c *config) { c.AdminToken = "" }},
		{name: "bad-id", id: "Backup1"},
		{name: "bad-limit", id: "1", query: "?limit=-2"},
		{name: "body-malformed", id: "1", createBody: ptr(`{"backupId": `), restoreBody: ptr(`{"dryRun": `)},
		{name: "body-unknown-field", id: "1", createBody: ptr(`{"backupId": 1, "force": true}`), restoreBody: ptr(`{"force": true}`)},
		{name: "body-trailing", id: "1", createBody: ptr(`{"backupId": 1} {}`), restoreBody: ptr(`{"dryRun": true} {}`)},
		{name: "body-too-large", id: "1", createBody: ptr(`{"backupId": "` + strings.Repeat("a", maxBodyBytes) + `"}`),
			restoreBody: ptr(`{"dryRun": true, "x": "` + strings.Repeat("a", maxBodyBytes) + `"}`)},
		{name: "body-empty", id: "1", createBody: ptr(""), restoreBody: ptr("")},
		{name: "no-repository-configured", id: "1", cfg: func(c *config) { c.Repository = "" }},
		{name: "elasticsearch-unreachable", id: "1", unreachable: true, cfg: scheduled},
		{name: "repository-missing", id: "1", snapshots: "get-missing-repo", states: "state-missing-repo",
			es: map[string]string{listAll: "list-missing-repo", "GET /_snapshot/test-repo": "get-repository-missing"}},
		// The jobs index answers something that is not a document (a bug's 500).
		{name: "jobs-unreadable", id: "1", snapshots: "get-completed", states: "state-completed",
			es: map[string]string{getJob: misrouted("get-repository"), getMarks: misrouted("get-repository"), getDrill: misrouted("get-repository"), getDrillResult("1"): misrouted("get-repository")}},
		{name: "restore-running", id: "12", snapshots: "get-completed-12", states: "ids-state-12",
			es: map[string]string{getJob: "job-found-running", createJobs: "jobs-index-created", putMarks: "marks-created", putJob: "job-updated"}},
		{name: "restore-refused", id: "12", snapshots: "get-completed-12", states: "ids-state-12", restoreBody: ptr(`{"replaceExisting": false}`),
			es: map[string]string{getDrill: "drill-found-running", resolveIdx: "resolve-installations", createJobs: "jobs-index-created", putMarks: "marks-created"}},
	}
}

// request is the request the walk sends for op in the situation.
func (sit walkSituation) request(op walkOp) (method, path, body string, header map[string]string) {
	path = strings.ReplaceAll(op.path, "{id}", sit.id) + sit.query
	header = map[string]string{"Authorization": "Bearer test-admin-token"}
	if sit.header != nil {
		header = sit.header
	}
	if !op.hasBody {
		return op.method, path, "", header
	}
	if strings.HasSuffix(op.path, "/restore") {
		body = `{"dryRun": true}` // a restore that passes its checks does not start
		if sit.restoreBody != nil {
			body = *sit.restoreBody
		}
		return op.method, path, body, header
	}
	body = `{"backupId": ` + strconv.Quote(sit.id) + `}`
	if _, err := strconv.ParseUint(sit.id, 10, 63); err == nil {
		body = `{"backupId": ` + sit.id + `}`
	}
	if sit.createBody != nil {
		body = *sit.createBody
	}
	return op.method, path, body, header
}

// answers are the fake Elasticsearch's answers in the situation, for op.
func (sit walkSituation) answers(op walkOp) map[string]string {
	es := walkAnswers(sit.id)
	for k, v := range sit.es {
		es[k] = v
	}
	snapshots, states := cmp.Or(sit.snapshots, "get-unknown"), cmp.Or(sit.states, "state-unknown")
	es[getBackup(sit.id)] = snapshots
	if op.method == "GET" && strings.HasSuffix(op.path, "/{id}") {
		es[getBackup(sit.id)] = states
	}
	return es
}

// TestOpenAPIStatusesWalk sends every operation of openapi.json through the real router in
// every situation of walkSituations, against the golden tests' fake Elasticsearch, and fails
// on an answer that the document does not describe for that operation: a status it does not
// list (the point of this test), or a body of another shape (openAPIProblem). The golden tests
// compare chosen answers word for word; this walk checks that no route answers a status its
// documentation leaves out, in situations no golden test pairs with that route. It also sends
// each documented path a method it does not serve, which must answer the documented 405.
func TestOpenAPIStatusesWalk(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	ops := documentedOps(t)
	answered := map[string][]int{} // "METHOD path" -> statuses seen
	for _, sit := range walkSituations() {
		for _, op := range ops {
			t.Run(sit.name+"/"+op.method+" "+op.path, func(t *testing.T) {
				cfg := testConfig(closed.URL)
				// The metrics read the repository with fields no recording holds, and answer 200
				// whatever Elasticsearch says: they are sent where nothing answers.
				if !sit.unreachable && op.path != "/actuator/prometheus" {
					cfg = testConfig(newFakeES(t, sit.answers(op)).srv.URL)
				}
				if sit.cfg != nil {
					sit.cfg(&cfg)
				}
				srv := newTestServer(t, cfg)
				method, path, body, header := sit.request(op)
				res := serve(t, srv, method, path, body, header)
				finishBackground(srv) // a create's part 2 has started (or its note was written)
				req, _ := servedRequests.Load(res)
				if err := openAPIProblem(t, req.(*http.Request), res); err != nil {
					t.Errorf("%s %s: %v (it documents %v); body %s", method, path, err, op.statuses, res.Body)
				}
				key := op.method + " " + op.path
				if !slices.Contains(answered[key], res.Code) {
					answered[key] = append(answered[key], res.Code)
				}
			})
		}
	}
	for _, op := range ops {
		t.Run("method-not-served/"+op.path, func(t *testing.T) {
			srv := newTestServer(t, testConfig(closed.URL))
			res := serve(t, srv, "PATCH", strings.ReplaceAll(op.path, "{id}", "1"), "", nil)
			req, _ := servedRequests.Load(res)
			if err := openAPIProblem(t, req.(*http.Request), res); err != nil || res.Code != http.StatusMethodNotAllowed {
				t.Errorf("PATCH %s: got %d (%v); want the documented 405", op.path, res.Code, err)
			}
		})
	}
	// What no situation reached is the golden tests' to cover (or documented for nothing).
	for _, op := range ops {
		key := op.method + " " + op.path
		for _, s := range op.statuses {
			if !slices.Contains(answered[key], s) {
				t.Logf("%s: documented %d not reached by the walk", key, s)
			}
		}
	}
}
