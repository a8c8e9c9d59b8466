package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// The access log: one JSON line per request, found by the caller's X-Request-Id; admin calls
// are audit lines that also say who called. No body and no header but the request ID and the
// user agent is ever logged: bodies and the Authorization header are the caller's.

// requestIDHeader carries the request ID: taken from the caller (a proxy or a script) when it
// is a sane one, generated otherwise, and always sent back in the answer.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLength bounds a caller's request ID: UUIDs (36) and W3C trace IDs (32) fit; a
// caller must not make every log line of its request arbitrarily long.
const maxRequestIDLength = 128

// maxUserAgentLength bounds the user agent an audit line shows, for the same reason.
const maxUserAgentLength = 200

// accessEntry is what the access log learns about a request while it is served: its ID (for
// writeError's lines) and whether admin made it an audit line (in the request's goroutine).
type accessEntry struct {
	id    string
	audit bool
}

// accessKey is the request context key of the request's *accessEntry.
type accessKey struct{}

// accessEntryOf is the request's access entry; outside the access log (handlers called
// directly) an empty one that nobody reads.
func accessEntryOf(r *http.Request) *accessEntry {
	if e, ok := r.Context().Value(accessKey{}).(*accessEntry); ok {
		return e
	}
	return &accessEntry{}
}

// accessLog wraps the whole router: it settles the request ID, sends it back, counts the answer
// for /actuator/prometheus and writes one line per answer. It must be the outermost wrapper:
// it hands the mux a copy of the request (with the entry in its context), and only that copy
// learns the matched pattern, which the line shows instead of the path's backup ID.
func (s *server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id, replaced := requestID(r.Header.Get(requestIDHeader))
		entry := &accessEntry{id: id}
		w.Header().Set(requestIDHeader, id)
		r = r.WithContext(context.WithValue(r.Context(), accessKey{}, entry))
		rec := &accessRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		status := cmp.Or(rec.status, http.StatusOK) // nothing written: net/http answers 200
		// Counted before the answer is flushed: a scrape right after it sees it.
		s.metrics.count(r.Method, r.Pattern, status)
		// An answer of known length (writeJSON's) is sent before its line is written: the
		// caller need not wait for the log's write, and it goes out in one write, not two.
		if rec.status != 0 && w.Header().Get("Content-Length") != "" {
			_ = http.NewResponseController(rec).Flush()
		}
		took := time.Since(start)
		attrs := []slog.Attr{
			slog.String("request_id", id),
			slog.String("method", r.Method),
			slog.String("route", r.Pattern), // "" when no route matched (404, 405)
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("took", float64(took.Microseconds())/1000),
		}
		if replaced {
			// The caller sent one, unusable: say so, without repeating it.
			attrs = append(attrs, slog.Bool("request_id_replaced", true))
		}
		msg := "request"
		if entry.audit {
			msg = "audit"
			ua := r.UserAgent()
			ua = ua[:min(len(ua), maxUserAgentLength)]
			attrs = append(attrs, slog.Bool("audit", true), slog.String("remote", r.RemoteAddr), slog.String("user_agent", ua))
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, msg, attrs...)
	})
}

// requestID returns the caller's request ID if it is usable, else a new one, and whether a
// caller's ID was replaced. Usable is 1 to maxRequestIDLength printable ASCII characters without
// spaces: anything else could forge or flood log lines downstream of this JSON log.
func requestID(given string) (id string, replaced bool) {
	if given == "" {
		return rand.Text(), false
	}
	if len(given) > maxRequestIDLength || strings.ContainsFunc(given, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return rand.Text(), true
	}
	return given, false
}

// accessRecorder remembers the status and counts the body bytes of an answer.
type accessRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

// WriteHeader keeps the first status written.
func (a *accessRecorder) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
	a.ResponseWriter.WriteHeader(status)
}

// Write counts what reaches the client; a body without a status is a 200.
func (a *accessRecorder) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	n, err := a.ResponseWriter.Write(b)
	a.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer (flush, deadlines).
func (a *accessRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }
