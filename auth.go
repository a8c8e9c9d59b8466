package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// admin guards a route with the admin token, compared in constant time (over hashes, so not
// even the token's length leaks), and makes the request's access-log line an audit line (who
// called, never the token).
func (s *server) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		accessEntryOf(r).audit = true
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		want := sha256.Sum256([]byte(s.cfg.AdminToken))
		switch {
		case s.cfg.AdminToken == "":
			s.writeError(w, r, errAdminDisabled)
		case !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1:
			s.writeError(w, r, errUnauthorized)
		default:
			next(w, r)
		}
	}
}
