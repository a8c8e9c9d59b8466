package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// admin guards a route with the admin token and logs every call with its outcome: who (remote
// address and user agent), what (method and path) and the status answered, never the token.
func (s *server) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		if err := s.checkAdmin(r); err != nil {
			s.writeError(rec, r, err)
		} else {
			next(rec, r)
		}
		s.log.Info("admin call", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
			"user_agent", r.UserAgent(), "status", rec.status)
	}
}

// checkAdmin compares the bearer token with the configured one in constant time (over hashes,
// so not even the token's length leaks).
func (s *server) checkAdmin(r *http.Request) error {
	if s.cfg.AdminToken == "" {
		return errAdminDisabled
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return errUnauthorized
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return errUnauthorized
	}
	return nil
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}
