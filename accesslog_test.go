package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects JSON log lines from handlers that may log from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends one log line.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything logged so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines decodes every log line; a line that is not JSON fails the test.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// accessLines are the access-log lines (msg request or audit) among the log lines.
func accessLines(t *testing.T, b *logBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range b.lines(t) {
		if l["msg"] == "request" || l["msg"] == "audit" {
			out = append(out, l)
		}
	}
	return out
}

// newLoggedServer is a test server on a fake Elasticsearch with these routes, logging JSON
// (as run does) into the returned buffer.
func newLoggedServer(t *testing.T, routes map[string]string) (*server, *logBuffer) {
	t.Helper()
	fake := newFakeES(t, routes)
	srv := newTestServer(t, testConfig(fake.srv.URL))
	logs := &logBuffer{}
	srv.log = slog.New(slog.NewJSONHandler(logs, nil))
	return srv, logs
}

// TestAccessLogLine checks the one line per request through the real router: method, route
// pattern (not the path's backup ID), path, status, body bytes and a duration, with the
// caller's request ID echoed back, or a generated one when the caller sent none or one that
// could forge or flood log lines.
func TestAccessLogLine(t *testing.T) {
	long := strings.Repeat("a", maxRequestIDLength+1)
	for _, tc := range []struct {
		name, method, path, sentID string
		es                         map[string]string
		status                     int
		route                      string
		keepID, replaced           bool
	}{
		{name: "no id", method: "GET", path: "/actuator/health/liveness", status: 200, route: "GET /actuator/health/liveness"},
		{name: "caller id kept", method: "GET", path: "/actuator/health/readiness", sentID: "3f2c9a1e-7d1b-4c56-9e0f-5a8b7c6d5e4f",
			status: 200, route: "GET /actuator/health/readiness", keepID: true},
		{name: "pattern not path", method: "GET", path: "/actuator/backups/1", es: map[string]string{getBackup("1"): "state-completed"},
			sentID: "trace-01:abc/def", status: 200, route: "GET /actuator/backups/{id}", keepID: true},
		{name: "unknown route", method: "GET", path: "/nope", status: 404, route: ""},
		{name: "newline refused", method: "GET", path: "/actuator/health/liveness", sentID: "x\n{\"msg\":\"forged\"}", status: 200,
			route: "GET /actuator/health/liveness", replaced: true},
		{name: "space refused", method: "GET", path: "/actuator/health/liveness", sentID: "a b", status: 200,
			route: "GET /actuator/health/liveness", replaced: true},
		{name: "non-ASCII refused", method: "GET", path: "/actuator/health/liveness", sentID: "idé", status: 200,
			route: "GET /actuator/health/liveness", replaced: true},
		{name: "too long refused", method: "GET", path: "/actuator/health/liveness", sentID: long, status: 200,
			route: "GET /actuator/health/liveness", replaced: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, logs := newLoggedServer(t, tc.es)
			header := map[string]string{}
			if tc.sentID != "" {
				header[requestIDHeader] = tc.sentID
			}
			res := serve(t, srv, tc.method, tc.path, "", header)
			if res.Code != tc.status {
				t.Fatalf("got status %d; want %d", res.Code, tc.status)
			}
			echoed := res.Header().Get(requestIDHeader)
			switch {
			case tc.keepID && echoed != tc.sentID:
				t.Errorf("got %s %q; want the caller's %q", requestIDHeader, echoed, tc.sentID)
			case !tc.keepID && (echoed == tc.sentID || len(echoed) < 20):
				t.Errorf("got %s %q; want a generated ID of 20 or more characters", requestIDHeader, echoed)
			}
			lines := accessLines(t, logs)
			if len(lines) != 1 {
				t.Fatalf("got %d access lines %v; want 1", len(lines), lines)
			}
			l := lines[0]
			want := map[string]any{"msg": "request", "level": "INFO", "request_id": echoed, "method": tc.method, "route": tc.route,
				"path": tc.path, "status": float64(tc.status), "bytes": float64(res.Body.Len())}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("got %s %v; want %v (line %v)", k, l[k], v, l)
				}
			}
			if took, ok := l["took"].(float64); !ok || took < 0 {
				t.Errorf("got took %v; want a duration in milliseconds", l["took"])
			}
			if got, _ := l["request_id_replaced"].(bool); got != tc.replaced {
				t.Errorf("got request_id_replaced %v; want %v", l["request_id_replaced"], tc.replaced)
			}
			if _, ok := l["remote"]; ok {
				t.Errorf("got remote on a non-admin line %v; want it on audit lines only", l)
			}
			if tc.replaced && strings.Contains(logs.String(), "forged") {
				t.Errorf("the refused request ID reached the log: %s", logs)
			}
		})
	}
}

// answeredFirstLog is a log that, when a request's access line is written, waits (up to a
// while) for the test's client to have received the whole answer, and notes whether it had.
type answeredFirstLog struct {
	received chan struct{}
	before   chan bool
}

func (l *answeredFirstLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"msg":"request"`)) {
		select {
		case <-l.received:
			l.before <- true
		case <-time.After(2 * time.Second):
			l.before <- false
		}
	}
	return len(p), nil
}

// TestAnswerSentBeforeItsLogLine checks, through a real HTTP server, that a JSON answer goes
// out whole, with its Content-Length (not chunked), before its access line is written: the
// caller does not wait for the log. Without the flush, the log waits for an answer that waits
// for the log, and the check sees the line written first.
func TestAnswerSentBeforeItsLogLine(t *testing.T) {
	for _, path := range []string{"/actuator/backups/1", "/actuator/backups", "/actuator/backups/Upper"} {
		t.Run(path, func(t *testing.T) {
			fake := newFakeES(t, map[string]string{getBackup("1"): "state-completed", listAll: "ids-list"})
			srv := newTestServer(t, testConfig(fake.srv.URL))
			logs := &answeredFirstLog{received: make(chan struct{}), before: make(chan bool, 1)}
			srv.log = slog.New(slog.NewJSONHandler(logs, nil))
			web := httptest.NewServer(srv.routes())
			defer web.Close()

			res, err := http.Get(web.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			close(logs.received)
			if err != nil {
				t.Fatal(err)
			}
			if res.ContentLength != int64(len(body)) || len(res.TransferEncoding) != 0 {
				t.Errorf("got Content-Length %d and Transfer-Encoding %v for a body of %d bytes; want the length, not chunks",
					res.ContentLength, res.TransferEncoding, len(body))
			}
			if !<-logs.before {
				t.Errorf("the access line of %s was written before the caller had the answer", path)
			}
		})
	}
}

// TestAccessLogAudit checks that calls of admin routes (DELETE, restore POST) are audit lines
// with the caller's address, allowed or refused, and that neither the admin token (right or
// wrong) nor the request body is ever logged; the error line of a refused call carries the
// request ID too, so the two lines can be joined.
func TestAccessLogAudit(t *testing.T) {
	const bodyMarker = "body-marker-never-logged"
	for _, tc := range []struct {
		name, method, path, token, body string
		es                              map[string]string
		status                          int
		route                           string
	}{
		{name: "delete, no token", method: "DELETE", path: "/actuator/backups/7", status: 401, route: "DELETE /actuator/backups/{id}"},
		{name: "delete, wrong token", method: "DELETE", path: "/actuator/backup/7", token: "wrong-token-never-logged",
			status: 401, route: "DELETE /actuator/backup/{id}"},
		{name: "restore, wrong token", method: "POST", path: "/actuator/backups/7/restore", token: "wrong-token-never-logged",
			body: `{"dryRun": true, "comment": "` + bodyMarker + `"}`, status: 401, route: "POST /actuator/backups/{id}/restore"},
		{name: "delete, right token, unknown backup", method: "DELETE", path: "/actuator/backups/8", token: "test-admin-token",
			es: map[string]string{getBackup("8"): "get-unknown"}, status: 404, route: "DELETE /actuator/backups/{id}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, logs := newLoggedServer(t, tc.es)
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.RemoteAddr = "192.0.2.7:41234"
			req.Header.Set("User-Agent", "curl/8.5.0")
			req.Header.Set(requestIDHeader, "audit-req-1")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			res := httptest.NewRecorder()
			srv.routes().ServeHTTP(res, req)
			if res.Code != tc.status {
				t.Fatalf("got status %d %s; want %d", res.Code, res.Body, tc.status)
			}
			lines := accessLines(t, logs)
			if len(lines) != 1 {
				t.Fatalf("got %d access lines %v; want 1", len(lines), lines)
			}
			l := lines[0]
			want := map[string]any{"msg": "audit", "audit": true, "remote": "192.0.2.7:41234", "user_agent": "curl/8.5.0",
				"request_id": "audit-req-1", "method": tc.method, "route": tc.route, "status": float64(tc.status)}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("got %s %v; want %v (line %v)", k, l[k], v, l)
				}
			}
			for _, secret := range []string{"test-admin-token", "wrong-token-never-logged", bodyMarker} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("the log holds %q; want no token or body:\n%s", secret, logs)
				}
			}
			failed := 0
			for _, l := range logs.lines(t) {
				if l["msg"] == "request failed" {
					failed++
					if l["request_id"] != "audit-req-1" {
						t.Errorf("got error line request_id %v; want audit-req-1", l["request_id"])
					}
				}
			}
			if failed != 1 {
				t.Errorf("got %d error lines; want 1 (logged once, at the boundary)", failed)
			}
		})
	}
}

// TestAccessLogStatusWithoutBody checks that an answer with a status and no body (204 of a
// DELETE, here the recorder directly) is logged with that status and 0 bytes, and a handler
// that writes nothing at all as 200.
func TestAccessLogStatusWithoutBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		status  float64
	}{
		{"204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, 204},
		{"nothing written", func(w http.ResponseWriter, r *http.Request) {}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, logs := newLoggedServer(t, nil)
			srv.accessLog(tc.handler).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", "/x", nil))
			lines := accessLines(t, logs)
			if len(lines) != 1 || lines[0]["status"] != tc.status || lines[0]["bytes"] != float64(0) {
				t.Errorf("got %v; want one line with status %v and 0 bytes", lines, tc.status)
			}
		})
	}
}

// BenchmarkAccessLog measures what the access log adds to one request: the same small handler
// bare and wrapped, the log written as JSON to io.Discard (the cost of stdout is the
// terminal's, not the sidecar's).
func BenchmarkAccessLog(b *testing.B) {
	srv := &server{log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "UP"}) })
	for name, h := range map[string]http.Handler{"bare": handler, "logged": srv.accessLog(handler)} {
		b.Run(name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/actuator/health/liveness", nil)
			req.Header.Set(requestIDHeader, "bench-request-id")
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}

// TestRequestIDReachesElasticsearch checks that the Elasticsearch requests a sidecar request
// sends carry its request ID as X-Opaque-Id (Elasticsearch shows it in tasks and slow logs),
// through the production clients, and that requests outside any sidecar request carry none.
func TestRequestIDReachesElasticsearch(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Opaque-Id"))
		mu.Unlock()
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		io.WriteString(w, `{"snapshots":[],"total":0,"remaining":0}`)
	}))
	t.Cleanup(es.Close)
	srv := envServer(t, map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": es.URL, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "test-repo"})
	if res := serve(t, srv, "GET", "/actuator/backups/1", "", map[string]string{requestIDHeader: "trace-42"}); res.Code != 404 {
		t.Fatalf("got %d %s; want 404 (no snapshots)", res.Code, res.Body)
	}
	if _, err := srv.backupSnapshots(t.Context(), "1"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "trace-42" || seen[1] != "" {
		t.Errorf("got X-Opaque-Id %q; want [trace-42 \"\"]: the request's ID, then none outside a request", seen)
	}
}
