package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// maxBodyBytes bounds request bodies: a backup request is a few bytes.
const maxBodyBytes = 1 << 20

// family is one of Optimize's two route families, decided once per route by routes(): it sets
// the ID rule on create, the create answer, how IDs are written and the status for an
// unreachable Elasticsearch.
type family int

const (
	// legacy is Optimize 3.9's /actuator/backup: string (or integer) IDs, 200 on create.
	legacy family = iota
	// current is Optimize 3.10+'s /actuator/backups: integer IDs, 202 on create.
	current
)

// base is the path the family's routes start with.
func (f family) base() string {
	if f == legacy {
		return "/actuator/backup"
	}
	return "/actuator/backups"
}

// familyKey is the request context key under which routes() stores a route's family.
type familyKey struct{}

// inFamily hands f through the request's context to code the handler constructors do not
// reach (writeError); only routes() sets it.
func inFamily(f family, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		next(w, r.WithContext(context.WithValue(r.Context(), familyKey{}, f)))
	}
}

// routes is the sidecar's HTTP handler: every route of register, behind the access log (which
// also counts requests), and Optimize's JSON error shape for requests that match no route: 404,
// or 405 with the mux's Allow header. No catch-all "/" route: the mux computes 405 and Allow
// only when no pattern matches. When mux.Handler finds no pattern (a redirect to a cleaned path
// has one), the mux's plain-text answer is played into a recorder for its status and Allow.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	s.register(mux)
	return s.accessLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code == http.StatusMethodNotAllowed {
			allow := rec.Header().Get("Allow")
			w.Header().Set("Allow", allow)
			s.writeError(w, r, newHTTPError(http.StatusMethodNotAllowed, "methodNotAllowedError", "%s does not answer %s; it answers %s.", r.URL.Path, r.Method, allow))
			return
		}
		s.writeError(w, r, notFound("There is no route %s %s; see the README for the routes this sidecar serves.", r.Method, r.URL.Path))
	}))
}

// registrar is what register puts routes on: the server's mux, or the OpenAPI test's recorder
// (which checks that openapi.json documents exactly these routes).
type registrar interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// register lists every route the sidecar serves, on both route families.
func (s *server) register(mux registrar) {
	for _, f := range []family{legacy, current} {
		base := f.base()
		handle := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, inFamily(f, h)) }
		handle("POST "+base, s.handleCreateBackup(f))
		handle("GET "+base, s.handleListBackups(f))
		handle("GET "+base+"/{id}", s.handleGetBackup(f))
		handle("DELETE "+base+"/{id}", s.admin(s.handleDeleteBackup))
		handle("POST "+base+"/{id}/restore", s.admin(s.handleRestore(f)))
		handle("GET "+base+"/{id}/restore", s.handleRestoreStatus)
		handle("DELETE "+base+"/{id}/restore", s.admin(http.HandlerFunc(s.handleEndRestore)))
		handle("POST "+base+"/{id}/verify", s.admin(s.handleVerify))
		handle("GET "+base+"/{id}/verify", s.handleVerifyStatus)
	}
	// Not under /actuator/backups/, where it would shadow a backup of that ID.
	mux.HandleFunc("GET /actuator/schedule", s.handleSchedule)
	mux.HandleFunc("GET /actuator/health", s.handleHealth)
	mux.HandleFunc("GET /actuator/health/liveness", s.handleAlive)
	mux.HandleFunc("GET /actuator/health/readiness", s.handleAlive)
	mux.HandleFunc("GET /actuator/info", s.handleInfo)
	mux.HandleFunc("GET /actuator/prometheus", s.handlePrometheus)
	mux.HandleFunc("GET /actuator/openapi", s.handleOpenAPI)
}

// handleCreateBackup starts a backup: part 1 is accepted by Elasticsearch before it answers,
// part 2 follows in the background. 3.9 answers 200 with the snapshot names, 3.10+ 202.
func (s *server) handleCreateBackup(f family) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			BackupID json.RawMessage `json:"backupId"`
		}
		if err := decodeBody(w, r, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
		id, err := parseCreateID(f, body.BackupID)
		if err == nil {
			err = s.requireRepository()
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		// A create goes on if the caller hangs up: once part 1 is asked for, part 2 must follow.
		names, err := s.createBackup(context.WithoutCancel(r.Context()), id, "")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.log.Info("backup started", "backup_id", id, "repository", s.cfg.Repository, "snapshot", names[0])
		if f == legacy {
			writeJSON(w, http.StatusOK, map[string]any{"scheduledSnapshots": names})
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]any{
			// Optimize 3.10+'s sentence, word for word.
			"message":            fmt.Sprintf("Backup creation for ID %s has been scheduled. Use the GET API to monitor completion of backup process", id),
			"scheduledSnapshots": names,
		})
	}
}

// handleGetBackup reports one backup: one Elasticsearch request, and once this installation
// has run drills a second one, in parallel, for the backup's last drill.
func (s *server) handleGetBackup(f family) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var last *drillResult
		var drill sync.WaitGroup
		if s.drillsSeen.Load() && validateBackupID(id) == nil && s.cfg.Repository != "" {
			drill.Go(func() { last = s.lastDrill(r.Context(), id) })
		}
		info, snaps, err := s.readBackup(r.Context(), id, s.backupStates)
		if err == nil && info.State == stateIncomplete {
			info = s.explainIncomplete(r.Context(), info, snaps)
		}
		drill.Wait()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out := info.wire(f == legacy)
		if last != nil && drilledThese(*last, snaps) {
			out.LastVerification = last
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// backupAndSnapshots is the backup's state and the snapshots it was computed from, with every
// field the destructive paths read (index lists, metadata): one Elasticsearch request.
func (s *server) backupAndSnapshots(ctx context.Context, id string) (backupInfo, []snapshot, error) {
	return s.readBackup(ctx, id, s.backupSnapshots)
}

// readBackup validates the ID, reads the backup's snapshots with read and computes its state.
func (s *server) readBackup(ctx context.Context, id string, read func(context.Context, string) ([]snapshot, error)) (backupInfo, []snapshot, error) {
	if err := s.checkStatusRequest(id); err != nil {
		return backupInfo{}, nil, err
	}
	snaps, err := read(ctx, id)
	if err != nil {
		return backupInfo{}, nil, err
	}
	if len(snaps) == 0 {
		return backupInfo{}, nil, notFound("No Optimize backup with ID [%s] could be found.", id)
	}
	return backupState(id, snaps, s.backups.has(id), s.now(), s.cfg.Part2Grace), snaps, nil
}

// handleListBackups reports every backup in the repository, newest first; ?limit=N keeps N.
func (s *server) handleListBackups(f family) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
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
		// ?limit=N reads only the N newest backups' details (newestBackups); every backup, each
		// snapshot once (allBackups).
		var byID map[string][]snapshot
		var err error
		if limit > 0 {
			byID, err = s.newestBackups(r.Context(), limit)
		} else {
			byID, err = s.allBackups(r.Context(), listFields)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		now := s.now()
		out := make([]wireBackupInfo, 0, len(byID))
		for id, snaps := range byID {
			out = append(out, backupState(id, snaps, s.backups.has(id), now, s.cfg.Part2Grace).wire(f == legacy))
		}
		slices.SortFunc(out, func(a, b wireBackupInfo) int {
			return newestFirst(a.newest, b.newest, a.backupInfo.BackupID, b.backupInfo.BackupID)
		})
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// handleDeleteBackup deletes both snapshots of exactly one backup (admin only), unless the
// running restore or drill needs it. It answers alike on both families.
func (s *server) handleDeleteBackup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	// A DELETE goes on if the caller hangs up: its delete mark must not be left behind.
	names, err := s.deleteBackup(context.WithoutCancel(r.Context()), id, nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("backup deleted", "backup_id", id, "repository", s.cfg.Repository, "snapshot", strings.Join(names, ","))
	w.WriteHeader(http.StatusNoContent)
}

// deleteBackup deletes this installation's snapshots of exactly one backup and returns their
// names; check, if not nil, may refuse the delete on the snapshots as read (retention's).
func (s *server) deleteBackup(ctx context.Context, id string, check func([]snapshot) error) ([]string, error) {
	info, snaps, err := s.backupAndSnapshots(ctx, id)
	if err != nil {
		return nil, err
	}
	// Only this installation's snapshots of the ID, never a pattern: a repository can be
	// shared with another installation that used the same ID.
	names, err := s.ownSnapshots(id, snaps)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(snaps); err != nil {
			return nil, err
		}
	}
	if err := s.fenceRestores(ctx, id); err != nil {
		return nil, err // a restore or drill needs it, or that cannot be told: delete nothing
	}
	// A part 2 this process was about to start must not appear after the delete, nor a part 2
	// it follows be reported vanished.
	s.backups.cancel(id)
	s.watches.cancel(id)
	if err := s.deleteSnapshots(ctx, names); err != nil {
		// Only a delete that may have removed a part leaves a backup INCOMPLETE: one whose answer
		// was lost, or of several requests (a refused single request deleted nothing). What made
		// a backup that was not COMPLETED incomplete is the story of that backup.
		if info.State == stateCompleted && (answerLost(err) || len(batches(names)) > 1) {
			s.noteBackup(ctx, id, snaps, 0, fmt.Sprintf("a DELETE through the sidecar began deleting the backup (%s) at %s and did not finish: %v.", strings.Join(names, ", "), noteTime(s.now()), err))
		}
		if !answerLost(err) {
			s.unfence(ctx, id) // Elasticsearch refused: nothing was deleted
		} // else the mark stays: the delete may still be queued
		return nil, err
	}
	// Another replica may have started part 2 just as part 1 was read: delete it too (only a
	// part of the same backup, by its backup nonce).
	if late := s.lateParts(ctx, id, snaps, names); len(late) > 0 {
		if err := s.deleteSnapshots(ctx, late); err != nil {
			return nil, err
		}
		names = append(names, late...)
	}
	s.unfence(ctx, id)
	return names, nil
}

// ownSnapshots returns the sorted names of the snapshots that are this installation's (see
// isOwnSnapshot), and refuses (409) when there is none.
func (s *server) ownSnapshots(id string, snaps []snapshot) ([]string, error) {
	var own, foreign []string
	for _, sn := range snaps {
		if s.isOwnSnapshot(sn) {
			own = append(own, sn.Name)
		} else {
			foreign = append(foreign, sn.Name)
		}
	}
	if len(own) == 0 {
		return nil, conflict("Backup [%s] is not a backup of this installation (prefix [%s]): none of its snapshots (%s) holds this installation's indices. Delete it with the sidecar of its installation.",
			id, s.cfg.IndexPrefix, strings.Join(foreign, ", "))
	}
	slices.Sort(own)
	return own, nil
}

// isOwnSnapshot tells whether one snapshot is this installation's: by the prefix in its
// metadata, or (Optimize's own snapshots carry none) by whether it holds this one's indices.
func (s *server) isOwnSnapshot(sn snapshot) bool {
	if p, ok := sn.Metadata["indexPrefix"].(string); ok {
		return p == s.cfg.IndexPrefix
	}
	if len(sn.Indices) == 0 {
		return true // nothing tells otherwise (a snapshot that failed before it listed any)
	}
	in := newInstallation(s.cfg.IndexPrefix, otherInstallations(s.cfg.IndexPrefix, sn.Indices, nil))
	part1, part2, _ := in.split(sn.Indices)
	return len(part1)+len(part2) > 0
}

// fenceRestores marks the backup as being deleted (see deleteMarks), then refuses (409) and
// takes the mark back when a running or starting restore or drill needs it. The mark stays
// until unfence: a restore of the backup is refused while its delete may still be under way.
func (s *server) fenceRestores(ctx context.Context, id string) error {
	if err := s.changeMarks(ctx, func(m map[string]int64) { m[id] = s.now().UnixMilli() }); errors.Is(err, errDocChanged) {
		return conflict("Nothing was deleted: other DELETEs or a restore kept changing the restore bookkeeping in Elasticsearch at this moment. Send the DELETE of [%s] again (if a restore of it started, it answers 409 until the restore has ended).", id)
	} else if err != nil {
		return err
	}
	stored, err := s.loadJob(ctx)
	if job := stored.doc; err == nil && stored.found && job.uses(id) {
		role := "restores it"
		if job.BackupID != id {
			role = "holds its safety backup"
		}
		err = conflict("Backup [%s] cannot be deleted: the running restore of backup [%s] %s (step %s). Wait until GET .../%s/restore reports COMPLETED or FAILED.",
			id, job.BackupID, role, job.Step, job.BackupID)
	}
	if err == nil {
		err = s.drillUsing(ctx, id)
	}
	if err != nil {
		s.unfence(ctx, id)
	}
	return err
}

// unfence takes the backup's delete mark back. A failure only delays restores of that ID (for
// pendingDeleteFor), so it is logged, not answered.
func (s *server) unfence(ctx context.Context, id string) {
	if err := s.changeMarks(ctx, func(m map[string]int64) { delete(m, id) }); err != nil {
		s.log.Warn("cannot take back the delete mark of a backup; its restore is refused for an hour", "backup_id", id, "err", err)
	}
}

// lateParts returns the snapshots of the backup that appeared after it was read with the
// backupNonce of a deleted part: never a new backup of the same ID.
func (s *server) lateParts(ctx context.Context, id string, read []snapshot, deleted []string) []string {
	nonces := map[string]bool{}
	for _, sn := range read {
		if n, ok := sn.Metadata["backupNonce"].(string); ok && n != "" && slices.Contains(deleted, sn.Name) {
			nonces[n] = true
		}
	}
	if len(nonces) == 0 {
		return nil // Optimize's own backups start both parts at once: nothing comes late
	}
	again, err := s.backupSnapshots(ctx, id)
	if err != nil {
		s.log.Warn("cannot re-read the deleted backup", "backup_id", id, "err", err)
		return nil
	}
	var late []string
	for _, sn := range again {
		if n, _ := sn.Metadata["backupNonce"].(string); nonces[n] && !slices.Contains(deleted, sn.Name) {
			late = append(late, sn.Name)
		}
	}
	return late
}

// wireBackupInfo is backupInfo as one route family shows it: 3.10+ report integer IDs as
// JSON numbers, 3.9 reports every ID as a string.
type wireBackupInfo struct {
	BackupID any `json:"backupId"`
	backupInfo
	// LastVerification is the backup's last finished drill (GET of one backup only).
	LastVerification *drillResult `json:"lastVerification,omitempty"`
}

// wire is info as the 3.9 family (legacy true) or the 3.10+ family shows it.
func (info backupInfo) wire(legacy bool) wireBackupInfo {
	out := wireBackupInfo{BackupID: info.BackupID, backupInfo: info}
	if !legacy && fitsLong(info.BackupID) {
		out.BackupID = json.Number(info.BackupID)
	}
	return out
}

// decodeBody reads a JSON body of at most maxBodyBytes into v, refusing unknown fields and
// trailing data.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return err
	case errors.Is(err, io.EOF):
		return badRequest("The request body is empty; send a JSON object such as {\"backupId\": 1}.")
	case err != nil:
		return badRequest("The request body is not valid: %v; send a JSON object such as {\"backupId\": 1}.", err)
	}
	if !dec.More() {
		if _, err = dec.Token(); err == io.EOF {
			return nil
		}
		if errors.As(err, &tooLarge) {
			return err
		}
	}
	return badRequest("The request body has data after the JSON object; send exactly one JSON object.")
}

// writeJSON writes v as a JSON answer with this status, without HTML escaping (\u003c for <
// only gets in the way of scripts and terminals), encoded whole first so that it goes out with
// a Content-Length in one write as soon as the access log flushes it.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a value that cannot be JSON (a bug) gets here: say so, not half an answer.
		buf.Reset()
		status = http.StatusInternalServerError
		_ = enc.Encode(apiError{ErrorCode: "serverError", ErrorMessage: errorSentences["serverError"],
			DetailedMessage: "The sidecar could not encode its answer (" + err.Error() + "); this is a bug, please report it with this message."})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes()) // the client went away: nothing left to tell it
}

// checkStatusRequest checks what every route of one backup needs before reading: a valid ID
// and a configured repository.
func (s *server) checkStatusRequest(id string) error {
	if err := validateBackupID(id); err != nil {
		return err
	}
	return s.requireRepository()
}

// requireRepository fails when no repository name is configured.
func (s *server) requireRepository() error {
	if s.cfg.Repository == "" {
		return errNoRepository
	}
	return nil
}
