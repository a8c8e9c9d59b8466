package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Every error the sidecar knows, and the one place errors become HTTP answers.
//
// The rule for user text: an error type's Error() is the sentence the user reads in
// detailedMessage, saying what happened and what to do; classifyError maps each type to a
// status and an errorCode, and writes text only for errors that carry none of their own (an
// unreachable or refusing Elasticsearch). Lower layers wrap errors with what they were doing
// ("create snapshot x: ..."); errors.Is/As see through the wrapping.

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

// writeError is the one place errors become HTTP answers: it picks the status and error code,
// writes Optimize's JSON error shape and logs the error once.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := s.describeError(r, err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="optimize-backup"`)
	}
	level := s.log.Info
	if status >= 500 {
		level = s.log.Error
	}
	level("request failed", "request_id", requestIDOf(r), "method", r.Method, "path", r.URL.Path, "status", status, "err", err.Error())
	writeJSON(w, status, body)
}

// describeError maps an error to its HTTP status and body, with errors.Is/As. The route's
// family (from routes(), see inFamily) decides the status of an unreachable Elasticsearch.
func (s *server) describeError(r *http.Request, err error) (int, apiError) {
	status, code, detail := s.classifyError(r, err)
	return status, apiError{ErrorCode: code, ErrorMessage: errorSentences[code], DetailedMessage: detail}
}

// classifyError returns the status, the errorCode and the detailedMessage of an error: the
// user's sentence of the error type found in err's chain, or, for what Elasticsearch answered
// or did not, a sentence written here.
func (s *server) classifyError(r *http.Request, err error) (status int, code, detail string) {
	var (
		tooLarge  *http.MaxBytesError
		es        *esError
		untrusted *tls.CertificateVerificationError
	)
	for _, m := range []struct {
		status int
		code   string
		find   func(error) error // the error whose Error() is the detail, or nil
	}{
		{http.StatusBadRequest, "badRequestError", find[*badRequestError]},
		{http.StatusBadRequest, "badRequestError", is(errNoRepository)},
		{http.StatusNotFound, "notFoundError", find[*notFoundError]},
		{http.StatusNotFound, "notFoundError", find[*routeError]},
		{http.StatusNotFound, "notFoundError", find[*noRestoreError]},
		{http.StatusNotFound, "notFoundError", find[*noDrillError]},
		{http.StatusMethodNotAllowed, "methodNotAllowedError", find[*methodError]},
		{http.StatusConflict, "conflict", find[*backupInUseError]},
		{http.StatusConflict, "conflict", find[*foreignBackupError]},
		{http.StatusConflict, "conflict", find[*deleteConflictError]},
		{http.StatusConflict, "conflict", find[*restoreConflictError]},
		{http.StatusConflict, "conflict", find[*conflictError]},
		{http.StatusConflict, "conflict", find[*drillConflictError]},
		{http.StatusForbidden, "forbiddenError", is(errAdminDisabled)},
		{http.StatusUnauthorized, "unauthorizedError", is(errUnauthorized)},
		// The sidecar's own credentials or privileges, not the caller's: a server fault.
		{http.StatusInternalServerError, "serverError", find[*esAuthError]},
		// These two are wrapped with the particulars (which index, which variable to set).
		{http.StatusInternalServerError, "serverError", whole(errNoVersion)},
		{http.StatusInternalServerError, "serverError", whole(errNoOptimizeIndices)},
	} {
		if e := m.find(err); e != nil {
			return m.status, m.code, e.Error()
		}
	}
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, "badRequestError",
			fmt.Sprintf("The request body is larger than %d bytes; a backup request is a small JSON object such as {\"backupId\": 1}.", tooLarge.Limit)
	case errors.Is(err, errESUnreachable) && errors.As(err, &untrusted):
		detail := fmt.Sprintf("Elasticsearch at %s presented a certificate the sidecar does not trust (%v); set CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES to the PEM file of the CA that signed it (a mounted secret) and restart the sidecar.",
			strings.Join(s.cfg.esAddressesRedacted(), ","), untrusted.Err)
		if familyOf(r) == legacy {
			return http.StatusInternalServerError, "serverError", detail
		}
		return http.StatusBadGateway, "elasticsearchConnectionError", detail
	case errors.Is(err, errESUnreachable):
		detail := fmt.Sprintf("Elasticsearch at %s could not be reached; check that it is running and that OPTIMIZE_ELASTICSEARCH_HOST/_HTTP_PORT or OPTIMIZE_ELASTICSEARCH_URLS point at it.",
			strings.Join(s.cfg.esAddressesRedacted(), ","))
		if familyOf(r) == legacy {
			return http.StatusInternalServerError, "serverError", detail // as Optimize 3.9 documents
		}
		return http.StatusBadGateway, "elasticsearchConnectionError", detail
	case errors.As(err, &es) && es.Type == "repository_missing_exception":
		return http.StatusInternalServerError, "serverError",
			fmt.Sprintf("No repository with name [%s] could be found. Register it in Elasticsearch (PUT _snapshot/%s) or set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME to an existing one.", s.cfg.Repository, s.cfg.Repository)
	case errors.As(err, &es) && es.Type == "invalid_snapshot_name_exception":
		// The ID rules keep such names out; should Elasticsearch refuse one anyway, it is the
		// ID that must change, not a server fault.
		return http.StatusBadRequest, "badRequestError",
			fmt.Sprintf("Elasticsearch refused the snapshot name: %s. Choose a backupId that Elasticsearch accepts in a snapshot name.", es.Reason)
	case errors.As(err, &es):
		return http.StatusInternalServerError, "serverError", fmt.Sprintf("Elasticsearch refused a request: %v. See Elasticsearch's log for more.", err)
	case errors.Is(err, errAnswerTooLarge):
		return http.StatusInternalServerError, "serverError", "Elasticsearch's answer was larger than the sidecar reads: " + err.Error()
	default:
		return http.StatusInternalServerError, "serverError", fmt.Sprintf("The sidecar failed unexpectedly: %v. See the sidecar's log.", err)
	}
}

// find returns the error of type T in err's chain: its Error() is the user's sentence, without
// what lower layers wrapped around it.
func find[T error](err error) error {
	var t T
	if errors.As(err, &t) {
		return t
	}
	return nil
}

// is returns sentinel (its sentence alone) if it is in err's chain.
func is(sentinel error) func(error) error {
	return func(err error) error {
		if errors.Is(err, sentinel) {
			return sentinel
		}
		return nil
	}
}

// whole returns err itself if sentinel is in its chain: the wrapping holds the particulars.
func whole(sentinel error) func(error) error {
	return func(err error) error {
		if errors.Is(err, sentinel) {
			return err
		}
		return nil
	}
}

// userError is a fixed error whose text is the sentence the user reads.
type userError string

func (e userError) Error() string { return string(e) }

// errNoRepository means CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME is not set.
var errNoRepository error = userError("No snapshot repository is configured; set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME to the name of a repository registered in Elasticsearch and restart the sidecar.")

// notFoundError is a backup ID without snapshots.
type notFoundError struct{ id string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("No Optimize backup with ID [%s] could be found.", e.id)
}

// conflictError is a backup ID that is taken.
type conflictError struct {
	id       string
	existing []string
}

func (e *conflictError) Error() string {
	if len(e.existing) == 0 {
		return fmt.Sprintf("A backup with ID [%s] is already being created; choose another ID or wait for it and check its state.", e.id)
	}
	return fmt.Sprintf("A backup with ID [%s] already exists. Found snapshots: [%s]", e.id, strings.Join(e.existing, ", "))
}

// routeError is a request for a path the sidecar does not serve.
type routeError struct{ method, path string }

func (e *routeError) Error() string {
	return fmt.Sprintf("There is no route %s %s; see the README for the routes this sidecar serves.", e.method, e.path)
}

// methodError is a request for a path the sidecar serves, with a method it does not serve
// there; allow lists the methods it does.
type methodError struct{ method, path, allow string }

func (e *methodError) Error() string {
	return fmt.Sprintf("%s does not answer %s; it answers %s.", e.path, e.method, e.allow)
}

// foreignBackupError is a DELETE of another installation's backup in a shared repository.
type foreignBackupError struct{ id, prefix, shows string }

func (e *foreignBackupError) Error() string {
	return fmt.Sprintf("Backup [%s] is not a backup of this installation (prefix [%s]): %s. Delete it with the sidecar of its installation.", e.id, e.prefix, e.shows)
}

// restoreConflictError lists every failed precondition.
type restoreConflictError struct{ checks []restoreCheck }

func (e *restoreConflictError) Error() string {
	var failed []string
	for _, c := range e.checks {
		if !c.Passed {
			failed = append(failed, c.Message)
		}
	}
	return "Restore refused, nothing was changed: " + strings.Join(failed, " ")
}

// backupInUseError is a DELETE of a backup that the running restore needs.
type backupInUseError struct {
	id  string
	job jobDoc
}

func (e *backupInUseError) Error() string {
	role := "restores it"
	if e.job.BackupID != e.id {
		role = "holds its safety backup"
	}
	return fmt.Sprintf("Backup [%s] cannot be deleted: the running restore of backup [%s] %s (step %s). Wait until GET .../%s/restore reports COMPLETED or FAILED.",
		e.id, e.job.BackupID, role, e.job.Step, e.job.BackupID)
}

// deleteConflictError is a DELETE that lost the race with a restore starting at that moment.
type deleteConflictError struct{ id string }

func (e *deleteConflictError) Error() string {
	return fmt.Sprintf("Nothing was deleted: other DELETEs or a restore kept changing the restore bookkeeping in Elasticsearch at this moment. Send the DELETE of [%s] again (if a restore of it started, it answers 409 until the restore has ended).", e.id)
}

// noRestoreError means no restore of the backup is recorded in Elasticsearch.
type noRestoreError struct{ id string }

func (e *noRestoreError) Error() string {
	return fmt.Sprintf("No restore of backup [%s] is running or recorded in Elasticsearch (only the latest restore of this installation is kept); start one with POST .../%s/restore.", e.id, e.id)
}

// errStopping refuses long work that would start while the sidecar shuts down.
var errStopping = &drillConflictError{"The sidecar is stopping; send the request again to a running sidecar."}

// noDrillError means no drill of the backup is recorded in Elasticsearch.
type noDrillError struct{ id string }

func (e *noDrillError) Error() string {
	return fmt.Sprintf("No drill of backup [%s] is running or recorded in Elasticsearch; start one with POST .../%s/verify.", e.id, e.id)
}

// drillConflictError is a drill that cannot start now, or a DELETE of a backup a drill
// restores; its message says what runs and what to wait for.
type drillConflictError struct{ msg string }

func (e *drillConflictError) Error() string { return e.msg }

// badRequestError is input the sidecar refuses; its message says what to change.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

// badRequest is a badRequestError with a formatted message.
func badRequest(format string, args ...any) error {
	return &badRequestError{msg: fmt.Sprintf(format, args...)}
}

// errAdminDisabled means no admin token is configured: admin routes are off (secure default).
var errAdminDisabled error = userError("The admin API is disabled because no admin token is configured; set OPTIMIZE_BACKUP_ADMIN_TOKEN or OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE and restart the sidecar.")

// errUnauthorized means the request did not carry the admin token.
var errUnauthorized error = userError("This route needs the admin token; send the header Authorization: Bearer <token> with the value of OPTIMIZE_BACKUP_ADMIN_TOKEN.")

// errNoOptimizeIndices means there is nothing to back up for the configured prefix.
var errNoOptimizeIndices = errors.New("no Optimize indices to back up")

// errNoVersion means the version tag for a new backup could not be determined.
var errNoVersion = errors.New("cannot tell which Optimize version this backup is of")

// errSnapshotNameTaken means the snapshot name exists or is being created by someone else.
var errSnapshotNameTaken = errors.New("snapshot name already in use")

// errESUnreachable marks a request that got no answer from Elasticsearch (refused, reset,
// timed out). Optimize 3.9's routes report it as 500, 3.10+ routes as 502.
var errESUnreachable = errors.New("elasticsearch could not be reached")

// errAnswerTooLarge marks an Elasticsearch answer larger than maxAnswerBytes.
var errAnswerTooLarge = errors.New("elasticsearch's answer is too large")

// esError is an error answer from Elasticsearch (or from a gateway in front of it), decoded
// from its error body.
type esError struct {
	Status int
	Type   string
	Reason string
}

func (e *esError) Error() string {
	return fmt.Sprintf("Elasticsearch answered %d %s: %s", e.Status, e.Type, e.Reason)
}

// esAuthError is Elasticsearch refusing the sidecar's credentials (401) or a privilege they
// lack (403 security_exception). Its sentence names the credentials' variables and, from
// Elasticsearch's reason, the action and the privileges that grant it. It unwraps to the
// esError, so retry and status decisions see what Elasticsearch answered.
type esAuthError struct {
	es *esError
	// creds names the credentials used (see esClients.credsOf); "" if none are configured.
	creds string
}

// Unwrap is the refusal as Elasticsearch answered it.
func (e *esAuthError) Unwrap() error { return e.es }

// These pick Elasticsearch's reason of a refused privilege apart, e.g. "action
// [cluster:admin/snapshot/create] is unauthorized for API key id [k] of user [u], this action is
// granted by the cluster privileges [create_snapshot,manage,all]"; index actions add "on
// indices [...]".
var (
	refusedActionPattern  = regexp.MustCompile(`action \[([^\]]+)\] is unauthorized`)
	grantingPattern       = regexp.MustCompile(`granted by the (cluster|index) privileges \[([^\]]+)\]`)
	refusedIndicesPattern = regexp.MustCompile(`on indices \[([^\]]+)\]`)
)

// Error is the user's sentence: whose credentials, what Elasticsearch refused, what to grant
// or set, and Elasticsearch's own reason.
func (e *esAuthError) Error() string {
	const readme = `the README's "Elasticsearch privileges" lists every privilege backups and restores need`
	if e.es.Status == http.StatusUnauthorized {
		if e.creds == "" {
			return fmt.Sprintf("Elasticsearch asks for credentials and the sidecar has none (%d %s: %s); set OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY (or _FILE) or CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME and _PASSWORD, and restart the sidecar.",
				e.es.Status, e.es.Type, e.es.Reason)
		}
		return fmt.Sprintf("Elasticsearch refused the sidecar's credentials (%s) with %d %s: %s. Set valid ones there and restart the sidecar; an API key may have expired or been invalidated (GET _security/api_key shows it).",
			e.creds, e.es.Status, e.es.Type, e.es.Reason)
	}
	creds := e.creds
	if creds == "" {
		creds = "none configured"
	}
	action := refusedActionPattern.FindStringSubmatch(e.es.Reason)
	grant := grantingPattern.FindStringSubmatch(e.es.Reason)
	if action == nil || grant == nil {
		return fmt.Sprintf("Elasticsearch refused a request of the sidecar (%d %s: %s): its credentials (%s) lack a privilege. Grant it to them; %s.",
			e.es.Status, e.es.Type, e.es.Reason, creds, readme)
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

// esErrorBody is the shape of Elasticsearch's error answers.
type esErrorBody struct {
	Error struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
	Status int `json:"status"`
}

// errNotYet marks a state Elasticsearch is about to leave (an index whose shards do not show
// their recovery yet): try again in a moment.
var errNotYet = errors.New("not yet")
