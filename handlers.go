package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// maxBodyBytes bounds request bodies: a backup request is a few bytes, and nothing larger is
// read into memory.
const maxBodyBytes = 1 << 20

// routes lists every route the sidecar serves. Both Optimize route families answer: 3.9's
// /actuator/backup and 3.10+'s /actuator/backups, so scripts written for either work.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, base := range []string{"/actuator/backup", "/actuator/backups"} {
		mux.HandleFunc("POST "+base, s.handleCreateBackup)
		mux.HandleFunc("GET "+base, s.handleListBackups)
		mux.HandleFunc("GET "+base+"/{id}", s.handleGetBackup)
		mux.HandleFunc("DELETE "+base+"/{id}", s.admin(s.handleDeleteBackup))
		mux.HandleFunc("POST "+base+"/{id}/restore", s.admin(s.handleRestore))
		mux.HandleFunc("GET "+base+"/{id}/restore", s.handleRestoreStatus)
	}
	mux.HandleFunc("GET /actuator/health", s.handleHealth)
	mux.HandleFunc("GET /actuator/health/liveness", s.handleAlive)
	mux.HandleFunc("GET /actuator/health/readiness", s.handleAlive)
	mux.HandleFunc("GET /actuator/info", s.handleInfo)
	mux.HandleFunc("GET /actuator/prometheus", s.handlePrometheus)
	mux.HandleFunc("/", s.handleUnknownRoute)
	return s.countRequests(mux)
}

// handleCreateBackup starts a backup: part 1 is accepted by Elasticsearch before it answers,
// part 2 follows in the background once part 1 has finished.
func (s *server) handleCreateBackup(w http.ResponseWriter, r *http.Request) {
	var body struct {
		BackupID json.RawMessage `json:"backupId"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := parseBackupIDJSON(body.BackupID)
	if err == nil {
		err = s.requireRepository()
	}
	if err == nil {
		var names []string
		// A create goes on if the caller hangs up: once part 1 is asked for, part 2 must follow.
		names, err = s.createBackup(context.WithoutCancel(r.Context()), id)
		if err == nil {
			s.log.Info("backup started", "backup_id", id, "repository", s.cfg.Repository, "snapshot", names[0])
			if isLegacyRoute(r) {
				writeJSON(w, http.StatusOK, map[string]any{"scheduledSnapshots": names})
				return
			}
			writeJSON(w, http.StatusAccepted, map[string]any{
				"message":            fmt.Sprintf("Backup creation for ID [%s] has been scheduled. Use the GET API to monitor completion of backup process.", id),
				"scheduledSnapshots": names,
			})
			return
		}
	}
	s.writeError(w, r, err)
}

// handleGetBackup reports one backup: one Elasticsearch request.
func (s *server) handleGetBackup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	info, _, err := s.backupAndSnapshots(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info.wire(isLegacyRoute(r)))
}

// backupAndSnapshots is backup that also returns the snapshots it was computed from: one
// Elasticsearch request.
func (s *server) backupAndSnapshots(ctx context.Context, id string) (backupInfo, []snapshot, error) {
	if err := validateBackupID(id); err != nil {
		return backupInfo{}, nil, err
	}
	if err := s.requireRepository(); err != nil {
		return backupInfo{}, nil, err
	}
	snaps, err := s.backupSnapshots(ctx, id)
	if err != nil {
		return backupInfo{}, nil, err
	}
	if len(snaps) == 0 {
		return backupInfo{}, nil, &notFoundError{id: id}
	}
	return backupState(id, snaps, s.backups.has(id), s.now(), s.cfg.Part2Grace), snaps, nil
}

// defaultListPageSize is how many snapshots one Elasticsearch page holds when listing
// backups: large enough for few round trips, small enough to keep each answer bounded.
const defaultListPageSize = 1000

// handleListBackups reports every backup in the repository, newest first, paging through
// Elasticsearch. ?limit=N keeps the N newest.
func (s *server) handleListBackups(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.writeError(w, r, badRequest("The limit %q is not a positive whole number; use ?limit=10 or leave it out to list every backup.", v))
			return
		}
		limit = n
	}
	if err := s.requireRepository(); err != nil {
		s.writeError(w, r, err)
		return
	}
	byID := map[string][]snapshot{}
	var after string
	for {
		page, err := s.getSnapshots(r.Context(), "camunda_optimize_*", s.listPageSize, after, listFields)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, snap := range page.Snapshots {
			// Snapshots that do not follow Optimize's naming are not backups: ignore them.
			if id, _, _, _, ok := parseSnapshotName(snap.Name); ok {
				byID[id] = append(byID[id], snap)
			}
		}
		if page.Next == "" || len(page.Snapshots) == 0 {
			break
		}
		after = page.Next
	}
	now := s.now()
	infos := make([]backupInfo, 0, len(byID))
	for id, snaps := range byID {
		infos = append(infos, backupState(id, snaps, s.backups.has(id), now, s.cfg.Part2Grace))
	}
	sort.Slice(infos, func(i, j int) bool {
		if infos[i].newest != infos[j].newest {
			return infos[i].newest > infos[j].newest
		}
		return infos[i].BackupID > infos[j].BackupID
	})
	if limit > 0 && len(infos) > limit {
		infos = infos[:limit]
	}
	legacy := isLegacyRoute(r)
	out := make([]wireBackupInfo, len(infos))
	for i, info := range infos {
		out[i] = info.wire(legacy)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleDeleteBackup deletes both snapshots of exactly one backup (admin only), unless the
// running restore needs it.
func (s *server) handleDeleteBackup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, snaps, err := s.backupAndSnapshots(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	job, _, found, err := s.loadJob(r.Context())
	if err != nil {
		s.writeError(w, r, err) // unknown whether a restore needs it: delete nothing
		return
	}
	if found && job.uses(id) {
		s.writeError(w, r, &backupInUseError{id: id, job: job})
		return
	}
	// Exactly the snapshots read for this ID, never a pattern.
	names := make([]string, len(snaps))
	for i, snap := range snaps {
		names[i] = snap.Name
	}
	slices.Sort(names)
	// A part 2 this process was about to start must not appear after the delete.
	s.backups.cancel(id)
	if err := s.deleteSnapshots(r.Context(), names); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("backup deleted", "backup_id", id, "repository", s.cfg.Repository, "snapshot", strings.Join(names, ","))
	w.WriteHeader(http.StatusNoContent)
}

// handleUnknownRoute answers routes the sidecar does not serve with the JSON error shape.
func (s *server) handleUnknownRoute(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, &routeError{method: r.Method, path: r.URL.Path})
}

// isLegacyRoute tells whether a request came through Optimize 3.9's /actuator/backup family.
func isLegacyRoute(r *http.Request) bool {
	return r.URL.Path == "/actuator/backup" || strings.HasPrefix(r.URL.Path, "/actuator/backup/")
}

// wireBackupInfo is backupInfo as one route family shows it: 3.10+ report integer IDs as
// JSON numbers, 3.9 reports every ID as a string.
type wireBackupInfo struct {
	BackupID any `json:"backupId"`
	backupInfo
}

func (info backupInfo) wire(legacy bool) wireBackupInfo {
	out := wireBackupInfo{BackupID: info.BackupID, backupInfo: info}
	if !legacy && decimalInteger.MatchString(info.BackupID) && len(info.BackupID) <= 18 {
		out.BackupID = json.Number(info.BackupID)
	}
	return out
}

// decodeBody reads a JSON body of at most maxBodyBytes into v, refusing unknown fields and
// trailing data.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return err
		case errors.Is(err, io.EOF):
			return badRequest("The request body is empty; send a JSON object such as {\"backupId\": 1}.")
		default:
			return badRequest("The request body is not valid: %v; send a JSON object such as {\"backupId\": 1}.", err)
		}
	}
	if dec.More() {
		return badRequest("The request body has data after the JSON object; send exactly one JSON object.")
	}
	if _, err := dec.Token(); err != io.EOF {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return badRequest("The request body has data after the JSON object; send exactly one JSON object.")
	}
	return nil
}

// writeJSON writes v as a JSON answer with this status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away: nothing left to tell it
}

// apiError is the JSON error body Optimize answers with.
type apiError struct {
	ErrorCode       string `json:"errorCode"`
	ErrorMessage    string `json:"errorMessage"`
	DetailedMessage string `json:"detailedMessage"`
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
	level("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err.Error())
	writeJSON(w, status, body)
}

// describeError maps an error to its HTTP status and body, with errors.Is/As.
func (s *server) describeError(r *http.Request, err error) (int, apiError) {
	var (
		bad       *badRequestError
		tooLarge  *http.MaxBytesError
		notFound  *notFoundError
		conflict  *conflictError
		route     *routeError
		restore   *restoreConflictError
		inUse     *backupInUseError
		noRestore *noRestoreError
		es        *esError
		detail    = err.Error()
	)
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest, apiError{"badRequestError", bad.msg, detail}
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, apiError{"badRequestError",
			fmt.Sprintf("The request body is larger than %d bytes; a backup request is a small JSON object such as {\"backupId\": 1}.", tooLarge.Limit), detail}
	case errors.Is(err, errNoRepository):
		return http.StatusBadRequest, apiError{"badRequestError",
			"No snapshot repository is configured; set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME to the name of a repository registered in Elasticsearch and restart the sidecar.", detail}
	case errors.As(err, &notFound):
		return http.StatusNotFound, apiError{"notFoundError", fmt.Sprintf("No Optimize backup with ID [%s] could be found.", notFound.id), detail}
	case errors.As(err, &route):
		return http.StatusNotFound, apiError{"notFoundError", fmt.Sprintf("There is no route %s %s; see the README for the routes this sidecar serves.", route.method, route.path), detail}
	case errors.As(err, &noRestore):
		return http.StatusNotFound, apiError{"notFoundError", noRestore.Error(), detail}
	case errors.As(err, &inUse):
		return http.StatusConflict, apiError{"conflict", inUse.Error(), detail}
	case errors.As(err, &restore):
		return http.StatusConflict, apiError{"conflict", restore.Error(), detail}
	case errors.As(err, &conflict):
		return http.StatusConflict, apiError{"conflict", conflict.Error(), detail}
	case errors.Is(err, errAdminDisabled):
		return http.StatusForbidden, apiError{"forbiddenError",
			"The admin API is disabled because no admin token is configured; set OPTIMIZE_BACKUP_ADMIN_TOKEN or OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE and restart the sidecar.", detail}
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, apiError{"unauthorizedError",
			"This route needs the admin token; send the header Authorization: Bearer <token> with the value of OPTIMIZE_BACKUP_ADMIN_TOKEN.", detail}
	case errors.Is(err, errESUnreachable):
		msg := fmt.Sprintf("Elasticsearch at %s could not be reached; check that it is running and that OPTIMIZE_ELASTICSEARCH_HOST/_HTTP_PORT or OPTIMIZE_ELASTICSEARCH_URLS point at it.",
			strings.Join(s.cfg.esAddressesRedacted(), ","))
		if isLegacyRoute(r) {
			return http.StatusInternalServerError, apiError{"serverError", msg, detail}
		}
		return http.StatusBadGateway, apiError{"elasticsearchConnectionError", msg, detail}
	case errors.As(err, &es) && es.Type == "repository_missing_exception":
		return http.StatusInternalServerError, apiError{"serverError",
			fmt.Sprintf("No repository with name [%s] could be found. Register it in Elasticsearch (PUT _snapshot/%s) or set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME to an existing one.", s.cfg.Repository, s.cfg.Repository), detail}
	case errors.As(err, &es):
		return http.StatusInternalServerError, apiError{"serverError",
			fmt.Sprintf("Elasticsearch refused the request (%s: %s); see detailedMessage and Elasticsearch's log.", es.Type, es.Reason), detail}
	case errors.Is(err, errAnswerTooLarge):
		return http.StatusInternalServerError, apiError{"serverError", "Elasticsearch's answer was larger than the sidecar reads; " + err.Error(), detail}
	case errors.Is(err, errNoVersion), errors.Is(err, errNoOptimizeIndices):
		return http.StatusInternalServerError, apiError{"serverError", err.Error(), detail}
	default:
		return http.StatusInternalServerError, apiError{"serverError", "The sidecar failed unexpectedly; see detailedMessage and the sidecar's log.", detail}
	}
}

// errNoRepository means CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME is not set.
var errNoRepository = errors.New("no snapshot repository configured")

// requireRepository fails when no repository name is configured.
func (s *server) requireRepository() error {
	if s.cfg.Repository == "" {
		return errNoRepository
	}
	return nil
}

// notFoundError is a backup ID without snapshots.
type notFoundError struct{ id string }

func (e *notFoundError) Error() string { return "no snapshots for backup " + e.id }

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

// routeError is a request for a route the sidecar does not serve.
type routeError struct{ method, path string }

func (e *routeError) Error() string { return "no route " + e.method + " " + e.path }
