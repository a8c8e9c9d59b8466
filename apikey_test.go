package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigAPIKey checks where an API key comes from (the variable or a mounted file, both
// trimmed, for backups and for restores) and that the client gets it in the form the
// Authorization: ApiKey header carries: base64 of id:api_key, whichever form was set.
func TestConfigAPIKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("  key-id:key-secret\n"), 0o600)
	encoded := base64.StdEncoding.EncodeToString([]byte("key-id:key-secret"))
	for _, tc := range []struct {
		name              string
		env               map[string]string
		wantMain, wantRes string // encoded keys of the main and the restore client
		ownRestore        bool
	}{
		{name: "variable, encoded", env: map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": " " + encoded + " "},
			wantMain: encoded, wantRes: encoded},
		{name: "variable, id:api_key", env: map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": "key-id:key-secret"},
			wantMain: encoded, wantRes: encoded},
		{name: "file", env: map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE": keyFile},
			wantMain: encoded, wantRes: encoded},
		{name: "restore key from file, main basic auth", env: map[string]string{
			"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME": "backup", "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD": "pw",
			"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY_FILE": keyFile}, wantMain: "", wantRes: encoded, ownRestore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(mapEnv(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			main := cfg.mainCredentials()
			restore, own := cfg.restoreCredentials()
			if got := encodedIfSet(main.apiKey); got != tc.wantMain {
				t.Errorf("got main key %q; want %q", got, tc.wantMain)
			}
			if got := encodedIfSet(restore.apiKey); got != tc.wantRes || own != tc.ownRestore {
				t.Errorf("got restore key %q (own %v); want %q (own %v)", got, own, tc.wantRes, tc.ownRestore)
			}
			if _, err := newESClients(context.Background(), cfg); err != nil {
				t.Errorf("newESClients: %v", err)
			}
		})
	}
}

// encodedIfSet is encodedAPIKey of a set key, "" for none.
func encodedIfSet(key string) string {
	if key == "" {
		return ""
	}
	return encodedAPIKey(key)
}

// TestConfigAPIKeyErrors checks that contradicting credentials stop the sidecar at start with
// a line naming both variables, that a malformed key or key file is refused naming its
// variable, and that no error ever shows the key.
func TestConfigAPIKeyErrors(t *testing.T) {
	const secret = "c2VjcmV0LWtleS1uZXZlci1zaG93bg"
	dir := t.TempDir()
	keyFile, emptyFile, schemeFile := filepath.Join(dir, "key"), filepath.Join(dir, "empty"), filepath.Join(dir, "scheme")
	os.WriteFile(keyFile, []byte(secret), 0o600)
	os.WriteFile(emptyFile, []byte("\n"), 0o600)
	os.WriteFile(schemeFile, []byte("ApiKey "+secret), 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // every one must be in the error
	}{
		{"key and basic auth", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": secret, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME": "elastic"},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY:", "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD", "mutually exclusive"}},
		{"key file and password", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE": keyFile, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD": "pw"},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE:", "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD", "mutually exclusive"}},
		{"key and user in URL", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": secret, "OPTIMIZE_ELASTICSEARCH_URLS": "https://elastic:pw@es:9200"},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY:", "OPTIMIZE_ELASTICSEARCH_URLS", "mutually exclusive"}},
		{"key and key file", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": secret, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE": keyFile},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE: OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY is set too"}},
		{"restore key and restore user", map[string]string{"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY": secret, "OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_USERNAME": "restorer"},
			[]string{"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY:", "OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_USERNAME/_PASSWORD", "mutually exclusive"}},
		{"scheme in key", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": "ApiKey " + secret},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY:", `without the scheme`}},
		{"space in key", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": secret + " x"},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY:", "cannot go into an HTTP header"}},
		{"blank key", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": "  "},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY: the key is blank"}},
		{"restore key and user in URL", map[string]string{"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY": secret, "OPTIMIZE_ELASTICSEARCH_URLS": "https://elastic:pw@es:9200"},
			[]string{"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY:", "OPTIMIZE_ELASTICSEARCH_URLS holds a user name"}},
		{"empty secret after colon", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": secret + ":"},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY:", "empty id or secret"}},
		{"missing file", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE": filepath.Join(dir, "absent")},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE: cannot read", "mount the secret"}},
		{"empty file", map[string]string{"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY_FILE": emptyFile},
			[]string{"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY_FILE:", "is empty"}},
		{"scheme in file", map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE": schemeFile},
			[]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE:", "without the scheme"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(mapEnv(tc.env))
			if err == nil {
				t.Fatalf("got no error; want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("got %q; want an error that does not show the key", err)
			}
		})
	}
}

// TestElasticsearchRefusesCredentials answers the sidecar's Elasticsearch requests the way a
// secured Elasticsearch does (bodies in Elasticsearch's documented shape; the test node runs
// without security, so they cannot be recorded from it) and checks the answer a user gets
// through the real router: a clear 500 that names the credentials' variable and, for a missing
// privilege, the action and the privileges that grant it, never a bare "server error". A 403
// that is not about privileges (a write block) stays Elasticsearch's plain refusal.
func TestElasticsearchRefusesCredentials(t *testing.T) {
	const refusedCreate = `{"error":{"root_cause":[{"type":"security_exception","reason":"action [cluster:admin/snapshot/get] is unauthorized for API key id [k1] of user [optimize-backup], this action is granted by the cluster privileges [monitor_snapshot,create_snapshot,manage,all]"}],"type":"security_exception","reason":"action [cluster:admin/snapshot/get] is unauthorized for API key id [k1] of user [optimize-backup], this action is granted by the cluster privileges [monitor_snapshot,create_snapshot,manage,all]"},"status":403}`
	const refusedIndex = `{"error":{"root_cause":[],"type":"security_exception","reason":"action [indices:admin/resolve/index] is unauthorized for user [backup] with effective roles [optimize-backup] on indices [optimize-*], this action is granted by the index privileges [view_index_metadata,manage,all]"},"status":403}`
	const badKey = `{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate with provided credentials"}],"type":"security_exception","reason":"unable to authenticate with provided credentials"},"status":401}`
	const blocked = `{"error":{"root_cause":[],"type":"cluster_block_exception","reason":"index [optimize-report_v1] blocked by: [FORBIDDEN/8/index write (api)];"},"status":403}`
	for _, tc := range []struct {
		name, path string
		status     int
		body       string
		creds      map[string]string
		want       []string
	}{
		{"missing cluster privilege", "/actuator/backups/1", 403, refusedCreate, map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": "a2V5"},
			[]string{"refused the action [cluster:admin/snapshot/get]", "(the API key in OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY)",
				"lack the cluster privilege monitor_snapshot", "[monitor_snapshot,create_snapshot,manage,all]", `README's "Elasticsearch privileges"`}},
		{"missing index privilege", "/actuator/backups", 403, refusedIndex, map[string]string{"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME": "backup", "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD": "pw"},
			[]string{"(CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD)", "lack the index privilege view_index_metadata on [optimize-*]"}},
		{"wrong key", "/actuator/backup/1", 401, badKey, map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": "a2V5"},
			[]string{"refused the sidecar's credentials (the API key in OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY)", "unable to authenticate", "expired or been invalidated"}},
		{"no credentials", "/actuator/backups/1", 401, `{"error":{"type":"security_exception","reason":"missing authentication credentials for REST request [/_snapshot]"},"status":401}`, nil,
			[]string{"asks for credentials and the sidecar has none", "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY (or _FILE)"}},
		{"gateway 403", "/actuator/backups/1", 403, `<html>Forbidden</html>`, map[string]string{"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": "a2V5"},
			[]string{"lack a privilege", "<html>Forbidden</html>"}},
		{"write block is no privilege", "/actuator/backups/1", 403, blocked, nil,
			[]string{"Elasticsearch refused a request", "cluster_block_exception"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("X-Elastic-Product", "Elasticsearch")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			t.Cleanup(es.Close)
			env := map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": es.URL, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": "test-repo"}
			for k, v := range tc.creds {
				env[k] = v
			}
			srv := envServer(t, env)
			res := serve(t, srv, "GET", tc.path, "", nil)
			var body apiError
			json.Unmarshal(res.Body.Bytes(), &body)
			t.Logf("the user reads: %s", body.DetailedMessage)
			if res.Code != 500 || body.ErrorCode != "serverError" {
				t.Errorf("got %d %s; want 500 serverError", res.Code, res.Body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body.DetailedMessage, w) {
					t.Errorf("got detailedMessage %q; want it to contain %q", body.DetailedMessage, w)
				}
			}
			if strings.Contains(body.DetailedMessage, "a2V5") {
				t.Errorf("got detailedMessage %q; want no key in it", body.DetailedMessage)
			}
			checkErrorShape(t, res)
		})
	}
}
