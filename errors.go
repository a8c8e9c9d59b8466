package main

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Every error the sidecar knows, and the one place errors become HTTP answers.

// apiError is the JSON error body Optimize answers with: errorCode names the kind of error,
// errorMessage is that code's fixed sentence, detailedMessage says what happened and what to do.
type apiError struct {
	ErrorCode       string `json:"errorCode"`
	ErrorMessage    string `json:"errorMessage"`
	DetailedMessage string `json:"detailedMessage"`
}

// errorSentences are the fixed errorMessage of each errorCode; the first five are Optimize's
// own, word for word.
var errorSentences = map[string]string{
	"notFoundError":                "The server could not find the requested resource.",
	"badRequestError":              "The server was unable to process the request.",
	"conflict":                     "Could not apply the changes due to conflicts.",
	"elasticsearchConnectionError": "The server has encountered Elasticsearch connection issues.",
	"serverError":                  "The server encountered an unexpected error.",
	"unauthorizedError":            "The request lacks valid authentication credentials for this resource.",
	"forbiddenError":               "The server refuses to carry out this request.",
	"methodNotAllowedError":        "The request method is not supported for this resource.",
}

// httpError is an error with its HTTP answer, made where the sidecar decides to refuse or fail:
// the status, Optimize's errorCode and the sentence the operator reads in detailedMessage,
// without what lower layers wrapped around it.
type httpError struct {
	status int
	code   string
	msg    string
	cause  error // what errors.Is/As see beneath it, if anything (see because)
}

// Error is the operator's sentence.
func (e *httpError) Error() string { return e.msg }

// Unwrap is the cause the error was made with, if any.
func (e *httpError) Unwrap() error { return e.cause }

// because returns a copy of e with cause in its chain, for code that must tell this error
// apart with errors.Is; the sentence stays e's.
func (e *httpError) because(cause error) *httpError {
	c := *e
	c.cause = cause
	return &c
}

// newHTTPError is an httpError with a formatted sentence.
func newHTTPError(status int, code, format string, args ...any) *httpError {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// badRequest (400) is input the sidecar refuses; the sentence says what to change.
func badRequest(format string, args ...any) *httpError {
	return newHTTPError(http.StatusBadRequest, "badRequestError", format, args...)
}

// notFound (404) is a backup, job or route that does not exist.
func notFound(format string, args ...any) *httpError {
	return newHTTPError(http.StatusNotFound, "notFoundError", format, args...)
}

// conflict (409) is a request that the state of the backups or jobs refuses now; the
// sentence says what stands in the way and what to wait for.
func conflict(format string, args ...any) *httpError {
	return newHTTPError(http.StatusConflict, "conflict", format, args...)
}

// serverError (500) is a failure of the sidecar or of what it was configured with.
func serverError(format string, args ...any) *httpError {
	return newHTTPError(http.StatusInternalServerError, "serverError", format, args...)
}

// writeError writes Optimize's JSON error shape for err (see describeError) and logs it once.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := s.describeError(r, err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="optimize-backup"`)
	}
	level := s.log.Info
	if status >= 500 {
		level = s.log.Error
	}
	level("request failed", "request_id", accessEntryOf(r).id, "method", r.Method, "path", r.URL.Path, "status", status, "err", err.Error())
	writeJSON(w, status, body)
}

// describeError is the HTTP status and body of an error: those of the httpError in its chain,
// else those answerOf writes.
func (s *server) describeError(r *http.Request, err error) (int, apiError) {
	var he *httpError
	if !errors.As(err, &he) {
		he = s.answerOf(r, err)
	}
	return he.status, apiError{ErrorCode: he.code, ErrorMessage: errorSentences[he.code], DetailedMessage: he.msg}
}

// answerOf is the answer to an error the sidecar did not make into an httpError: what
// Elasticsearch answered or did not, a request body too large, or a bug.
func (s *server) answerOf(r *http.Request, err error) *httpError {
	var (
		refused   *esAuthError
		tooLarge  *http.MaxBytesError
		es        *esError
		untrusted *tls.CertificateVerificationError
	)
	at := strings.Join(s.cfg.esAddressesRedacted(), ",")
	switch {
	case errors.As(err, &refused):
		// The sidecar's own credentials or privileges, not the caller's: a server fault.
		return serverError("%s", refused.Error())
	case errors.As(err, &tooLarge):
		return newHTTPError(http.StatusRequestEntityTooLarge, "badRequestError",
			"The request body is larger than %d bytes; a backup request is a small JSON object such as {\"backupId\": 1}.", tooLarge.Limit)
	case errors.Is(err, errESUnreachable) && errors.As(err, &untrusted):
		return unreachable(r, "%s at %s presented a certificate the sidecar does not trust (%v); set %s to the PEM file of the CA that signed it (a mounted secret) and restart the sidecar.",
			s.cfg.product(), at, untrusted.Err, s.cfg.connVar("CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES"))
	case errors.Is(err, errESUnreachable):
		return unreachable(r, "%s at %s could not be reached; check that it is running and that %s/_HTTP_PORT or OPTIMIZE_ELASTICSEARCH_URLS point at it.", s.cfg.product(), at, s.cfg.connVar("OPTIMIZE_ELASTICSEARCH_HOST"))
	case errors.As(err, &es) && es.Type == "repository_missing_exception":
		return serverError("No repository with name [%s] could be found. Register it in %s (PUT _snapshot/%s) or set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME to an existing one.", s.cfg.Repository, s.cfg.product(), s.cfg.Repository)
	case errors.As(err, &es) && es.Type == "invalid_snapshot_name_exception":
		// The ID rules keep such names out; should Elasticsearch refuse one anyway, it is the
		// ID that must change, not a server fault.
		return badRequest("Elasticsearch refused the snapshot name: %s. Choose a backupId that Elasticsearch accepts in a snapshot name.", es.Reason)
	case errors.As(err, &es):
		return serverError("Elasticsearch refused a request: %v. See Elasticsearch's log for more.", err)
	case errors.Is(err, errAnswerTooLarge):
		return serverError("Elasticsearch's answer was larger than the sidecar reads: %v", err)
	default:
		return serverError("The sidecar failed unexpectedly: %v. See the sidecar's log.", err)
	}
}

// unreachable is the answer when Elasticsearch could not be reached: 500 on Optimize 3.9's
// routes (as Optimize 3.9 documents), 502 elasticsearchConnectionError on 3.10+'s and the rest
// (routes outside both families, such as health, count as 3.10+'s).
func unreachable(r *http.Request, format string, args ...any) *httpError {
	if f, ok := r.Context().Value(familyKey{}).(family); ok && f == legacy {
		return serverError(format, args...)
	}
	return newHTTPError(http.StatusBadGateway, "elasticsearchConnectionError", format, args...)
}

var (
	// errNoRepository means CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME is not set.
	errNoRepository = badRequest("No snapshot repository is configured; set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME to the name of a repository registered in Elasticsearch and restart the sidecar.")
	// errStopping refuses long work that would start while the sidecar shuts down.
	errStopping = conflict("The sidecar is stopping; send the request again to a running sidecar.")
	// errAdminDisabled means no admin token is configured: admin routes are off (secure default).
	errAdminDisabled = newHTTPError(http.StatusForbidden, "forbiddenError", "The admin API is disabled because no admin token is configured; set OPTIMIZE_BACKUP_ADMIN_TOKEN or OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE and restart the sidecar.")
	// errUnauthorized means the request did not carry the admin token.
	errUnauthorized = newHTTPError(http.StatusUnauthorized, "unauthorizedError", "This route needs the admin token; send the header Authorization: Bearer <token> with the value of OPTIMIZE_BACKUP_ADMIN_TOKEN.")
	// errIDTaken is in the chain of the 409 of a taken backup ID (see idTaken): the scheduler
	// tells it from other failures to start.
	errIDTaken = errors.New("backup ID taken")
	// errSnapshotNameTaken means the snapshot name exists or is being created by someone else.
	errSnapshotNameTaken = errors.New("snapshot name already in use")
	// errESUnreachable marks a request that got no answer from Elasticsearch (refused, reset,
	// timed out).
	errESUnreachable = errors.New("elasticsearch could not be reached")
	// errAnswerTooLarge marks an Elasticsearch answer larger than maxAnswerBytes.
	errAnswerTooLarge = errors.New("elasticsearch's answer is too large")
	// errNotYet marks a state Elasticsearch is about to leave (an index whose shards do not
	// show their recovery yet): try again in a moment.
	errNotYet = errors.New("not yet")
)

// esError is an error answer from Elasticsearch (or from a gateway in front of it).
type esError struct {
	Status int
	Type   string
	Reason string
}

// Error is the answer's status, type and reason.
func (e *esError) Error() string {
	return fmt.Sprintf("Elasticsearch answered %d %s: %s", e.Status, e.Type, e.Reason)
}

// esAuthError is Elasticsearch refusing the sidecar's credentials (401) or a privilege they
// lack (403 security_exception), with the variables that set them. It unwraps to the esError,
// so retry and status decisions see what Elasticsearch answered.
type esAuthError struct {
	es *esError
	// creds names the credentials used (see esClients); "" if none are configured.
	creds string
}

// Unwrap is the refusal as Elasticsearch answered it.
func (e *esAuthError) Unwrap() error { return e.es }

// These pick a refused privilege's reason apart: "action [cluster:admin/snapshot/create] is
// unauthorized for API key id [k] of user [u], this action is granted by the cluster privileges
// [create_snapshot,manage,all]"; index actions add "on indices [...]".
var (
	refusedActionPattern  = regexp.MustCompile(`action \[([^\]]+)\] is unauthorized`)
	grantingPattern       = regexp.MustCompile(`granted by the (cluster|index) privileges \[([^\]]+)\]`)
	refusedIndicesPattern = regexp.MustCompile(`on indices \[([^\]]+)\]`)
)

// Error is the user's sentence: whose credentials, what Elasticsearch refused, what to grant
// or set, and Elasticsearch's own reason.
func (e *esAuthError) Error() string {
	const readme = `the README's "Elasticsearch privileges" lists every privilege backups and restores need`
	answer := fmt.Sprintf("%d %s: %s", e.es.Status, e.es.Type, e.es.Reason)
	if e.es.Status == http.StatusUnauthorized {
		if e.creds == "" {
			return "Elasticsearch asks for credentials and the sidecar has none (" + answer + "); set OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY (or _FILE) or CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME and _PASSWORD, and restart the sidecar."
		}
		return fmt.Sprintf("Elasticsearch refused the sidecar's credentials (%s) with %s. Set valid ones there and restart the sidecar; an API key may have expired or been invalidated (GET _security/api_key shows it).", e.creds, answer)
	}
	creds := cmp.Or(e.creds, "none configured")
	action := refusedActionPattern.FindStringSubmatch(e.es.Reason)
	grant := grantingPattern.FindStringSubmatch(e.es.Reason)
	if action == nil || grant == nil {
		return fmt.Sprintf("Elasticsearch refused a request of the sidecar (%s): its credentials (%s) lack a privilege. Grant it to them; %s.", answer, creds, readme)
	}
	kind, privileges := grant[1], grant[2]
	narrowest, _, _ := strings.Cut(privileges, ",")
	on := ""
	if ix := refusedIndicesPattern.FindStringSubmatch(e.es.Reason); ix != nil {
		on = " on [" + ix[1] + "]"
	}
	grantTo := "their role"
	if strings.Contains(creds, "API key") {
		// A key holds what its role descriptors grant, within its owner's privileges.
		grantTo = "the key (a new key, or PUT _security/api_key/<id> with role_descriptors; its owner must hold it too)"
	}
	return fmt.Sprintf("Elasticsearch refused the action [%s]: the sidecar's credentials (%s) lack the %s privilege %s%s. Grant %s one of the %s privileges [%s]%s (%s); the sidecar needs no restart. Elasticsearch said: %s",
		action[1], creds, kind, narrowest, on, grantTo, kind, privileges, on, readme, e.es.Reason)
}
